"""Duplicated and shuffled replay of a recorded session: the same final state (issue 10).

The recording is what a station publishes for one EVSE over a few sessions: its status reports
and meter values, each with the next ``(epoch, seq)``. The model is the recording itself, not
the CSMS's code: the final state is the last report the station made, and each session's energy
is the total the station reported when it ended.

- Any order, any duplicates (a broker redelivering, a station replaying its queue, an attacker
  replaying a capture): the EVSE ends in the station's last reported state, and no session is
  opened or closed twice.
- Duplicates anywhere and meter values late, but status reports in the order the station made
  them (what MQTT gives one publisher, and what the station's offline queue keeps, protocol
  section 12): every session is recorded exactly once with exactly the station's energy.
- The first property again through the real ingest path (supervisor, EVSE actor, fleet view).

Births are not shuffled here: a birth with another epoch resets the order on purpose (protocol
section 10: a station that lost its counter recovers at its next birth), so a replayed old
birth is a separate matter, left to the ACL (only the station can publish its births).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pykka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.evse_state import EvseState
from actors.evse_transition import SessionClosed, SessionOpened, StationCameOnline, transition
from actors.messages import GetEvseRef, GetState
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    MeterValues,
    SessionId,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    StopReason,
)
from tests.test_csms_v2 import Csms

pytestmark = [pytest.mark.timeout(120)]

SID, EID, EPOCH = StationId("RP-1"), EvseId("1"), 1_700_000_000_000
Report = StatusReport | MeterValues


@dataclass(frozen=True)
class Recording:
    messages: list[Report]
    """In the order the station made them (seq 1, 2, ...)."""
    sessions: dict[str, float]
    """Session id -> the energy the station reported when it ended."""


@st.composite
def recordings(draw: st.DrawFn) -> Recording:
    """One EVSE's reports over 1-3 sessions, each with 0-5 meter values."""
    messages: list[Report] = []
    sessions: dict[str, float] = {}
    register = round(draw(st.floats(0, 1e6, allow_nan=False)), 1)
    seq = 0

    def status(status: EvseStatus, **info: object) -> None:
        nonlocal seq
        seq += 1
        messages.append(
            StatusReport(
                station_id=SID,
                info=EvseInfo(evse_id=EID, status=status, energy_wh=register, **info),  # type: ignore[arg-type]
                seq=seq,
                ts=EPOCH + seq,
                epoch=EPOCH,
            )
        )

    status(EvseStatus.AVAILABLE)
    for n in range(draw(st.integers(1, 3))):
        session = SessionId(f"s{n}")
        status(EvseStatus.PREPARING, session_id=session)
        status(EvseStatus.CHARGING, session_id=session, power_w=11_000.0)
        delivered = 0.0
        for step in draw(st.lists(st.floats(0.1, 500, allow_nan=False), max_size=5)):
            delivered = round(delivered + step, 1)
            seq += 1
            messages.append(
                MeterValues(
                    station_id=SID,
                    evse_id=EID,
                    session_id=session,
                    power_w=11_000.0,
                    energy_wh=round(register + delivered, 1),
                    soc=None,
                    seq=seq,
                    ts=EPOCH + seq,
                    epoch=EPOCH,
                )
            )
        delivered = round(delivered + draw(st.floats(0.1, 500, allow_nan=False)), 1)
        register = round(register + delivered, 1)
        status(
            EvseStatus.FINISHING,
            session_id=session,
            session_energy_wh=delivered,
            stop_reason=StopReason.REMOTE,
        )
        sessions[session] = delivered
        status(EvseStatus.AVAILABLE)
    return Recording(messages, sessions)


@st.composite
def free_replays(draw: st.DrawFn) -> tuple[Recording, list[Report]]:
    """The recording with some messages duplicated, all of it in any order."""
    recording = draw(recordings())
    extra = draw(st.lists(st.sampled_from(recording.messages), max_size=len(recording.messages)))
    return recording, draw(st.permutations([*recording.messages, *extra]))


@st.composite
def mqtt_replays(draw: st.DrawFn) -> tuple[Recording, list[Report]]:
    """Status reports in their order; meter values late by a few places; any message repeated
    later (redelivery). Sorted by (position + delay), ties in recording order."""
    recording = draw(recordings())
    keyed: list[tuple[float, int, Report]] = []
    for index, message in enumerate(recording.messages):
        late = 0 if isinstance(message, StatusReport) else draw(st.integers(0, 4)) + 0.5
        keyed.append((index + late, index, message))
        if draw(st.booleans()):
            keyed.append((index + draw(st.integers(1, 6)) + 0.25, index, message))
    return recording, [message for *_, message in sorted(keyed, key=lambda k: (k[0], k[1]))]


def replay(
    messages: list[Report],
) -> tuple[EvseState, Counter[str], Counter[str], dict[str, float]]:
    """The EVSE's pure state machine, after its station's birth: final state, how often each
    session was opened and closed, and the energy each was closed with."""
    state = EvseState(station_id=SID, descriptor=EvseDescriptor(id=EID))
    state, _ = transition(state, StationCameOnline(ts=EPOCH, epoch=EPOCH))
    opened: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    energy: dict[str, float] = {}
    for message in messages:
        state, effects = transition(state, message)
        for effect in effects:
            match effect:
                case SessionOpened(session_id=sid):
                    opened[sid] += 1
                case SessionClosed(session_id=sid, session_energy_wh=wh):
                    closed[sid] += 1
                    energy[sid] = wh
    return state, opened, closed, energy


def last_reported(recording: Recording) -> EvseInfo:
    last = recording.messages[-1]
    assert isinstance(last, StatusReport)
    return last.info


def seen_as(state: EvseState) -> tuple[object, ...]:
    return (state.status, state.energy_wh, state.session_id, state.seq, state.epoch)


def expected(recording: Recording) -> tuple[object, ...]:
    info = last_reported(recording)
    return (info.status, info.energy_wh, info.session_id, len(recording.messages), EPOCH)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(free_replays())
def test_any_order_and_any_duplicates_end_in_the_stations_last_state(
    case: tuple[Recording, list[Report]],
) -> None:
    recording, messages = case
    state, opened, closed, _ = replay(messages)
    assert seen_as(state) == expected(recording)
    assert all(n == 1 for n in opened.values()), opened
    assert all(n == 1 for n in closed.values()), closed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mqtt_replays())
def test_redelivery_and_late_meters_record_every_session_once_with_the_stations_energy(
    case: tuple[Recording, list[Report]],
) -> None:
    recording, messages = case
    state, opened, closed, energy = replay(messages)
    assert seen_as(state) == expected(recording)
    assert opened == Counter(dict.fromkeys(recording.sessions, 1))
    assert closed == Counter(dict.fromkeys(recording.sessions, 1))
    assert energy == recording.sessions


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(free_replays())
def test_the_real_ingest_path_ends_in_the_stations_last_state_too(
    case: tuple[Recording, list[Report]],
) -> None:
    recording, messages = case
    csms = Csms()
    try:
        evse = EvseDescriptor(id=EID, max_power_w=22_000.0, connector="Type2")
        descriptor = StationDescriptor(id=SID, name="replay", lat=45.0, lon=9.0, evses=(evse,))
        csms.tell(StationBirth(station=descriptor, ts=EPOCH, epoch=EPOCH))
        for message in messages:
            csms.tell(message)
        # Asks queue behind every message told: the supervisor's, then the EVSE's.
        ref = csms.supervisor.ask(GetEvseRef(evse_id=EvseId(f"{SID}.{EID}")), timeout=10)
        state = ref.ask(GetState(), timeout=10)
        assert seen_as(state) == expected(recording)
        csms.sync_view()
        view = csms.view.evse(f"{SID}.{EID}")
        assert view is not None
        assert seen_as(view.state) == expected(recording)
    finally:
        csms.timers.stop()
        pykka.ActorRegistry.stop_all()
