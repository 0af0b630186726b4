"""Session rows and driver notifications from EVSE events: a batch of events is written in
one transaction and notified after it commits; a failed batch is replayed write by write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pykka
import pytest

from actors.evse_state import EvseState
from actors.evse_transition import SessionClosed, SessionOpened, StateChanged
from actors.listeners import EvseListener, ListenerHost
from actors.live import LiveEvent, LiveHub
from actors.messages import EvseChanged, EvseChangedBatch
from actors.notifier import Notifier
from actors.session_owners import SessionOwner, SessionOwners
from actors.session_recorder import SessionRecorder
from protocol import EvseStatus, SessionId, StopReason
from storage import Role, Storage, StorageUnavailableError
from tests.support import evse_state

pytest_plugins = ("tests.storage_fixtures",)

S = EvseStatus
SID = SessionId("s-1")
IDLE = evse_state("st-001.1", status=S.AVAILABLE)


@pytest.fixture
def actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def changed(before: EvseState, after: EvseState, *extra: Any) -> EvseChanged:
    return EvseChanged(state=after, effects=(StateChanged(before=before, after=after), *extra))


def one_session() -> EvseChangedBatch:
    """Charging starts, meters 7 kW, and finishes at 1.5 kWh: one batch."""
    charging = replace(IDLE, status=S.CHARGING, session_id=SID, power_w=11e3, energy_wh=0.0)
    metered = replace(charging, power_w=7e3, energy_wh=900.0, session_energy_wh=900.0)
    finished = replace(
        metered, status=S.FINISHING, power_w=0.0, energy_wh=1_500.0, session_energy_wh=1_500.0
    )
    return EvseChangedBatch(
        events=(
            changed(IDLE, charging, SessionOpened(session_id=SID, energy_wh=0.0)),
            EvseChanged(state=metered, effects=()),
            changed(
                metered,
                finished,
                SessionClosed(session_id=SID, session_energy_wh=1_500.0, reason=StopReason.LOCAL),
            ),
        )
    )


def recorder_for(store: Storage, hub: LiveHub, transaction: Any) -> SessionRecorder:
    driver = store.users.create("ada@example.org", "not-a-hash", Role.DRIVER)
    owners = SessionOwners()
    owners.expect(SessionOwner(session_id=SID, driver_id=driver.id))
    return SessionRecorder(
        store.sessions,
        owners,
        Notifier(store.notifications, hub),
        progress_every_s=0.0,
        transaction=transaction,
    )


def pushed(hub_stream: Any) -> list[LiveEvent]:
    events = []
    while (event := hub_stream.get(timeout=0)) is not None:
        events.append(event)
    return events


def assert_recorded_once(store: Storage, notes: list[LiveEvent]) -> None:
    session = store.sessions.get(SID)
    assert session is not None
    assert session.ended_at is not None
    assert session.end_reason == "Local"
    assert session.energy_wh == pytest.approx(1_500.0)
    assert session.peak_power_w == pytest.approx(11e3)
    assert session.driver_id is not None
    stored = store.notifications.for_user(session.driver_id)
    assert [n.kind for n in stored] == ["session_ended", "session_started"]
    assert [e.data["kind"] for e in notes] == ["session_started", "session_ended"]
    assert [e.data["id"] for e in notes] == [n.id for n in reversed(stored)], "pushed = stored"


def test_the_writes_of_a_batch_share_one_transaction_and_are_notified_after_it(
    store: Storage, actors: None
) -> None:
    hub = LiveHub()
    stream = hub.subscribe(lambda event: event.kind == "notification")
    transactions = 0

    @contextmanager
    def counted() -> Iterator[None]:
        nonlocal transactions
        transactions += 1
        with store.transaction():
            yield

    subscriber = ListenerHost.start([recorder_for(store, hub, counted)])
    subscriber.ask(one_session(), timeout=10)

    assert transactions == 1, "open, progress, close and two notifications: one transaction"
    assert_recorded_once(store, pushed(stream))


def test_a_batch_whose_transaction_fails_is_written_again_change_by_change(
    store: Storage, actors: None
) -> None:
    hub = LiveHub()
    stream = hub.subscribe(lambda event: event.kind == "notification")
    failures = 0

    @contextmanager
    def fails_at_commit() -> Iterator[None]:
        nonlocal failures
        with store.transaction():
            yield
            failures += 1
            raise StorageUnavailableError("the disk went away")  # rolls everything back

    subscriber = ListenerHost.start([recorder_for(store, hub, fails_at_commit)])
    subscriber.ask(one_session(), timeout=10)

    assert failures == 1
    assert_recorded_once(store, pushed(stream))  # nothing lost, nothing twice


class CallLog(EvseListener):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def evse_changed(self, event: EvseChanged) -> None:
        self.calls.append(f"changed {event.state.status}")

    def batch_done(self) -> None:
        self.calls.append("done")


def test_a_listener_hears_batch_done_after_each_message_and_its_events(actors: None) -> None:
    log = CallLog()
    subscriber = ListenerHost.start([log])
    batch = one_session()

    subscriber.ask(batch, timeout=10)
    subscriber.ask(batch.events[0], timeout=10)

    assert log.calls == [
        "changed Charging",
        "changed Charging",
        "changed Finishing",
        "done",
        "changed Charging",
        "done",
    ]
