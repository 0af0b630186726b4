"""The ingest router: each EVSE's messages straight to its actor, births through the
supervisor, and nothing overtaking the birth it follows (actors/routing.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.acks import AppliedLatch
from actors.evse import EvseBatch
from actors.inbox import BatchInbox
from actors.listeners import ListenerHost
from actors.messages import InboundReady
from actors.routing import EvseRegistry, IngestRouter
from actors.supervisor import SupervisorActor
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
)
from tests.support import FleetWatcher

pytestmark = pytest.mark.timeout(60)

SID = StationId("rt-1")
WAIT_S = 10.0


class Recording(pykka.ThreadingActor):
    """Records what it is told; answers an ask once everything before it is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, InboundReady):
            self.got.extend(message.inbox.take())
        elif message != "sync":
            self.got.append(message)
        return list(self.got)


def seen(ref: pykka.ActorRef[Any]) -> list[Any]:
    got: list[Any] = ref.ask("sync", timeout=WAIT_S)
    return got


def birth() -> StationBirth:
    evses = (EvseDescriptor(id=EvseId("1"), connector="Type2", max_power_w=22_000.0),)
    station = StationDescriptor(id=SID, name="rt", lat=45.0, lon=9.0, evses=evses)
    return StationBirth(station=station, ts=1, epoch=1)


def status(seq: int, st: EvseStatus = EvseStatus.AVAILABLE) -> StatusReport:
    info = EvseInfo(evse_id=EvseId("1"), status=st)
    return StatusReport(station_id=SID, info=info, seq=seq, ts=seq, epoch=1)


@pytest.fixture
def stopped_after() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.mark.usefixtures("stopped_after")
def test_a_known_evses_messages_go_straight_to_its_actor_with_the_batchs_latch() -> None:
    registry = EvseRegistry()
    evse, supervisor = Recording.start(), Recording.start()
    registry.put(EvseId(f"{SID}.1"), evse)
    router = IngestRouter(registry, BatchInbox(supervisor))
    acked = threading.Event()
    latch = AppliedLatch(acked.set)

    router.route([status(1), status(2)], latch)

    batches = [m for m in seen(evse) if isinstance(m, EvseBatch)]
    assert len(batches) == 1
    *reports, its_latch = batches[0].items
    assert reports == [status(1), status(2)]
    assert its_latch is latch
    assert seen(supervisor) == [], "the supervisor is off the path"
    assert not acked.is_set(), "acknowledged only once the actor has applied its part"
    latch.release()
    assert acked.is_set()


@pytest.mark.usefixtures("stopped_after")
def test_a_birth_goes_to_the_supervisor_and_holds_its_stations_next_messages() -> None:
    registry = EvseRegistry()
    evse, supervisor = Recording.start(), Recording.start()
    registry.put(EvseId(f"{SID}.1"), evse)
    router = IngestRouter(registry, BatchInbox(supervisor))
    latch = AppliedLatch(lambda: None)

    router.route([status(1), birth(), status(2)], latch)

    assert [m for m in seen(supervisor) if not isinstance(m, AppliedLatch)] == [birth()]
    direct = [m for m in seen(evse) if isinstance(m, EvseBatch)]
    assert [i for i in direct[0].items if not isinstance(i, AppliedLatch)] == [status(1)]
    with registry.lock:
        held = registry.take_held(SID)
    assert [i for i in held if not isinstance(i, AppliedLatch)] == [status(2)]
    assert held[-1] is latch


@pytest.mark.usefixtures("stopped_after")
def test_through_the_real_supervisor_no_report_overtakes_the_birth_it_follows() -> None:
    registry = EvseRegistry()
    watcher = FleetWatcher()
    supervisor = SupervisorActor.start(
        bridge=None,
        subscribers=[ListenerHost.start([watcher])],
        registry=registry,
    )
    router = IngestRouter(registry, BatchInbox(supervisor))
    statuses = [EvseStatus.AVAILABLE, EvseStatus.PREPARING, EvseStatus.AVAILABLE]
    acks: list[int] = []
    # The birth and the first reports in one batch, the next ones right behind it.
    router.route([birth(), status(1, statuses[0])], AppliedLatch(lambda: acks.append(1)))
    for seq in range(2, 40):
        st = statuses[seq % 3]
        router.route([status(seq, st)], AppliedLatch(lambda seq=seq: acks.append(seq)))
    key = f"{SID}.1"
    watcher.wait_for(lambda: key in watcher.latest and watcher.latest[key].seq == 39, "seq 39")
    applied = [s.seq for s in watcher.history[key] if s.seq > 0]
    assert applied == list(range(1, 40)), "every report applied, in order, none dropped"
    watcher.wait_for(lambda: len(acks) == 39, "every batch acknowledged")
    assert registry.get(key) is not None
    assert SID not in registry.held


@pytest.mark.usefixtures("stopped_after")
def test_a_message_the_supervisor_routes_holds_its_station_until_the_supervisor_has_routed_it() -> (
    None
):
    """The fleet being rebuilt at a restart: the supervisor gets the first reports (the
    registry is empty yet); the next ones must not overtake them once the EVSE is known."""
    registry = EvseRegistry()
    evse, supervisor = Recording.start(), Recording.start()
    router = IngestRouter(registry, BatchInbox(supervisor))

    router.route([status(1)], AppliedLatch(lambda: None))
    registry.put(EvseId(f"{SID}.1"), evse)  # the supervisor's on_start, meanwhile
    router.route([status(2)], AppliedLatch(lambda: None))

    assert [m for m in seen(supervisor) if not isinstance(m, AppliedLatch)] == [status(1)]
    assert seen(evse) == [], "status 2 waits behind status 1"
    with registry.lock:
        held = registry.take_held(SID)
    assert [i for i in held if not isinstance(i, AppliedLatch)] == [status(2)]
