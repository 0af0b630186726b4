"""The station simulator, driven by hand (a ManualClock, no threads, no broker): what it puts
on and takes from the wire (birth, statuses, raw and repeated commands, foreign topics), and
the same seed and clock replaying the same messages."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    CorrelationId,
    EvseStatus,
    MeterValues,
    StationBirth,
    StationOffline,
    StatusReport,
    commands_topic,
    encode,
    state_topic,
)
from tests import simulator_support
from tests.simulator_support import (
    EVSE,
    OTHER,
    SID,
    charging,
    command,
    descriptor,
    reply,
    run,
    run_until,
    send,
    station,
)

# --------------------------------------------------------------------------- wire


def test_online_messages_are_the_birth_then_every_evse_status() -> None:
    sim, clock = station()
    out = sim.online_messages()
    assert isinstance(out[0], StationBirth)
    assert out[0].station == descriptor()
    assert [m.info.evse_id for m in out[1:] if isinstance(m, StatusReport)] == [EVSE, OTHER]
    assert all(m.ts == int(clock.now() * 1000) for m in out if isinstance(m, StatusReport))
    topic, _, retain = encode(sim.last_will())
    assert (topic, retain) == (state_topic(SID), True)
    assert sim.offline_message() == StationOffline(station_id=SID, ts=out[0].ts, reason="shutdown")


def test_a_command_on_the_commands_topic_is_handled_from_raw_bytes() -> None:
    sim, clock = station()
    request = replace(command("info", sent=clock.now()), id=CorrelationId("c-9"))
    out = sim.handle_payload(*encode(request)[:2])
    assert reply(out).id == "c-9"
    assert reply(out).accepted


def test_a_command_delivered_twice_runs_and_is_answered_once() -> None:
    sim, clock = station()
    start = command("start", sent=clock.now(), session_id="s-1")
    first = sim.handle_command(start)
    assert reply(first).accepted
    assert sim.handle_command(start) == []  # QoS 1 redelivery: no second run, no second reply
    stop = command("stop", sent=clock.now())
    assert reply(sim.handle_command(stop)).accepted
    assert sim.handle_command(start) == []  # still remembered: the session does not restart
    assert sim.evse_info(EVSE).session_id in (None, "s-1")
    assert sim.evse_info(EVSE).status is not EvseStatus.PREPARING


def test_a_retained_command_is_ignored() -> None:
    sim, clock = station()
    topic, payload, _ = encode(command("start", sent=clock.now(), session_id="s-1"))
    assert sim.handle_payload(topic, payload, retained=True) == []
    assert sim.evse_info(EVSE).status is EvseStatus.AVAILABLE


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=200))
def test_a_malformed_command_payload_is_dropped(payload: bytes) -> None:
    sim, _ = station()
    assert sim.handle_payload(commands_topic(SID), payload) == []


FAR = 4_000_000_000_000  # an expires_at far in the future


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("smartcharge/v2/stations/st-1/commands", {"v": 2, "id": "c", "command": "dance",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/commands", {"v": 1, "id": "c", "command": "info",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/commands", {"v": 2, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),  # no expires_at
        ("smartcharge/v1/stations/st-1/commands", {"v": 1, "id": "c", "command": "info",
                                                   "evse_id": EVSE}),
        ("smartcharge/v2/stations/st-2/commands", {"v": 2, "id": "c", "command": "info",
                                                   "evse_id": EVSE, "expires_at": FAR}),
        ("smartcharge/v2/stations/st-1/evses/1/status", {"v": 2}),
    ],
)  # fmt: skip
def test_foreign_topics_and_bad_commands_are_ignored(topic: str, body: dict[str, Any]) -> None:
    sim, _ = station()
    assert sim.handle_payload(topic, json.dumps(body).encode()) == []


# --------------------------------------------------------------------------- determinism


def _scripted_run(seed: int) -> list[tuple[str, bytes, bool]]:
    simulator_support._command_ids = itertools.count(1)  # the same command ids in every run
    sim, clock = station(seed=seed)
    out = sim.online_messages() + send(sim, "start", session_id="s-1", target_soc=90)
    out += send(sim, "start", evse=OTHER, session_id="s-2")
    out += run(sim, clock, 600)
    out += send(sim, "stop", evse=OTHER) + run_until(sim, clock, EvseStatus.AVAILABLE, OTHER)
    return [encode(m) for m in out]


def test_the_same_seed_and_clock_replay_the_same_messages() -> None:
    first = _scripted_run(7)
    assert _scripted_run(7) == first
    assert _scripted_run(8) != first


def test_seq_is_monotonic_across_all_evses() -> None:
    sim, clock = charging()
    out = send(sim, "start", evse=OTHER, session_id="s-2") + run(sim, clock, 120)
    seqs = [m.seq for m in out if isinstance(m, StatusReport | MeterValues)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
