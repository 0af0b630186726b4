"""The fault suite (issue 10): the station link under crashes, partitions and hostile clients.

Every test here runs on loopback against real parts (Mosquitto, ``smartcharge csms`` and the fleet
simulator in their own processes where a kill is the point), is bounded in time (pytest-timeout)
and in traffic, and checks what survives: messages applied, sessions lost or duplicated, energy
against the stations' own JSON files, time to recover. CI runs it in the normal SQLite pass;
the tests that open storage run again on PostgreSQL (``needs_db``).

- ``test_csms_kill``: ``kill -9`` of the CSMS with 200 sessions charging.
- ``test_malformed_from_station``: 10,000 malformed payloads from an authenticated station.
- ``test_station_faults_link``: a station behind a blackholed link (``proxy.FaultProxy``), and
  killed mid-session.
- ``test_station_faults_commands``: a station frozen while a start is on its way, and gone when a
  driver starts.
- ``test_broker_faults``: ``kill -9`` of the broker under ~1,000 msg/s with 80 sessions, and 500
  stations reconnecting at once after a broker restart.
- ``test_hostile_clients``: on a broker that enforces identity (Mosquitto and amqtt), clients
  without their own credentials, a station on another station's topics, a client taking the
  CSMS's client id, forged command replies, huge and future-stamped reports.
- ``test_replay_property``: a recorded session replayed duplicated and shuffled (hypothesis):
  the station's last state, every session once with the station's own energy.
"""
