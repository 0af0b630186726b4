"""Persistence of what the actors decide (users, sessions, metrics) through ``dataset``.

The storage issue fills this package; until then the stations' own JSON files
(see ``simulator``) are the only state on disk, and the CSMS rebuilds its view
from the stations' retained MQTT messages at start.
"""
