"""After a restart, session rows agree with what the EVSEs are known to be doing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from actors.evse_state import EvseState
from actors.evse_transition import transition
from actors.live import LiveHub
from actors.messages import EvseChanged
from actors.notifier import Notifier
from actors.session_owners import SessionOwners
from actors.session_recorder import SessionRecorder
from protocol import EvseStatus, SessionId, StationId, StatusReport
from storage import Storage
from tests import db
from tests.db import open_test_storage
from tests.support import evse_state

pytestmark = pytest.mark.needs_db
db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)

SID = StationId("st-001")


def state(evse: str, status: EvseStatus, session: str | None = None) -> EvseState:
    return evse_state(
        evse,
        status=status,
        session_id=SessionId(session) if session else None,
    )


@pytest.fixture
def storage(tmp_path: Path, db_url: str | None) -> Iterator[Storage]:
    store = open_test_storage(tmp_path / "csms", db_url)
    try:
        yield store
    finally:
        store.close()


def test_a_row_left_open_for_an_evse_that_runs_no_session_is_closed_when_its_station_says_so(
    storage: Storage,
) -> None:
    sessions = storage.sessions
    sessions.open("s-ended", evse_id="st-001.1", station_id=SID, start_energy_wh=0)
    sessions.update_progress("s-ended", 4_200.0, 11_000.0)
    sessions.open("s-running", evse_id="st-001.2", station_id=SID)
    sessions.open("s-elsewhere", evse_id="zz-009.1", station_id="zz-009")
    resumed = [
        state("st-001.1", EvseStatus.AVAILABLE),
        state("st-001.2", EvseStatus.CHARGING, "s-running"),
    ]
    recorder = SessionRecorder(
        sessions, SessionOwners(), Notifier(None, LiveHub()), resumed=resumed
    )

    recorder.started()
    recorder.batch_done()

    waiting = sessions.get("s-ended")
    assert waiting is not None
    assert waiting.ended_at is None, "a saved state may be behind the row: the station decides"

    report(recorder, resumed[0], state("st-001.1", EvseStatus.AVAILABLE))

    ended = sessions.get("s-ended")
    assert ended is not None
    assert ended.ended_at is not None
    assert ended.end_reason == "Other"
    assert ended.energy_wh == pytest.approx(4_200.0)
    running = sessions.get("s-running")
    assert running is not None
    assert running.ended_at is None, "the EVSE still runs it"
    elsewhere = sessions.get("s-elsewhere")
    assert elsewhere is not None
    assert elsewhere.ended_at is None, "an EVSE with no known state proves nothing"


def preparing_then_charging(storage: Storage) -> tuple[SessionRecorder, EvseState]:
    """The race a kill can leave: the session recorder wrote the row (the EVSE was
    Charging) but the state recorder had only saved ``Preparing`` that session."""
    storage.sessions.open("s-raced", evse_id="st-001.1", station_id=SID, start_energy_wh=0)
    storage.sessions.update_progress("s-raced", 300.0, 11_000.0)
    saved = state("st-001.1", EvseStatus.PREPARING, "s-raced")
    recorder = SessionRecorder(
        storage.sessions, SessionOwners(), Notifier(None, LiveHub()), resumed=[saved]
    )
    recorder.started()
    return recorder, saved


def report(recorder: SessionRecorder, before: EvseState, after: EvseState) -> None:
    """The station's first report after the restart, as the rebuilt EVSE turns it into effects."""
    _, effects = transition(
        before,
        StatusReport(station_id=SID, info=after.info(), seq=before.seq + 1, ts=before.ts + 1),
    )
    recorder.evse_changed(EvseChanged(state=after, effects=effects))
    recorder.batch_done()


def test_a_row_saved_as_still_preparing_stays_open_while_its_station_charges_it(
    storage: Storage,
) -> None:
    recorder, saved = preparing_then_charging(storage)
    row = storage.sessions.get("s-raced")
    assert row is not None
    assert row.ended_at is None, "the saved state was behind the row: not proof of an end"

    charging = replace(saved, status=EvseStatus.CHARGING, power_w=11_000.0, energy_wh=400.0)
    report(recorder, saved, charging)

    row = storage.sessions.get("s-raced")
    assert row is not None
    assert row.ended_at is None


def test_a_row_saved_as_still_preparing_closes_when_its_station_runs_no_session(
    storage: Storage,
) -> None:
    recorder, saved = preparing_then_charging(storage)

    report(recorder, saved, state("st-001.1", EvseStatus.AVAILABLE))

    row = storage.sessions.get("s-raced")
    assert row is not None
    assert row.ended_at is not None
    assert row.end_reason == "Other"
    assert row.energy_wh == pytest.approx(300.0), "the energy it had recorded is kept"


def test_a_row_opened_after_the_saved_state_stays_open_while_its_station_charges_it(
    storage: Storage,
) -> None:
    """The race the kill test met: the row was opened (Charging) but the state recorder
    had last saved the EVSE ``Available``, from before the session."""
    storage.sessions.open("s-ahead", evse_id="st-001.1", station_id=SID, start_energy_wh=0)
    saved = state("st-001.1", EvseStatus.AVAILABLE)
    recorder = SessionRecorder(
        storage.sessions, SessionOwners(), Notifier(None, LiveHub()), resumed=[saved]
    )
    recorder.started()
    recorder.batch_done()

    charging = replace(
        saved, status=EvseStatus.CHARGING, session_id=SessionId("s-ahead"), energy_wh=500.0
    )
    report(recorder, saved, charging)

    row = storage.sessions.get("s-ahead")
    assert row is not None
    assert row.ended_at is None, "the station still charges it"
