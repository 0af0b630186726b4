"""The CSMS's one clock: the ManualClock on its own, and a running CSMS driven on it.

A command to a station that never answers times out when the test moves the CSMS's clock,
not after a real wait (the real-time backstop is a minute away, past this test's timeout).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator

import pykka
import pytest

from actors.clock import ManualClock
from actors.system import CsmsConfig, CsmsSystem, build_csms
from protocol import (
    CommandName,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    StationBirth,
    StationDescriptor,
    StationId,
    StatusReport,
    encode,
    evse_key,
)
from storage.errors import CommandTimeoutError
from tests.brokers import MqttClientFactory
from tests.support import FleetWatcher

# -- the clock on its own --------------------------------------------------------------------


def test_advancing_runs_the_due_timers_in_deadline_order_on_the_callers_thread() -> None:
    clock = ManualClock(start_s=1_000.0)
    ran: list[tuple[str, float, str]] = []

    def note(name: str) -> None:
        ran.append((name, clock.monotonic(), threading.current_thread().name))

    clock.call_later(3, lambda: note("third"))
    clock.call_later(1, lambda: note("first"))
    clock.call_later(2, lambda: note("second"))
    clock.call_later(10, lambda: note("later"))

    assert clock.advance(5) == 3

    me = threading.current_thread().name
    assert ran == [("first", 1.0, me), ("second", 2.0, me), ("third", 3.0, me)]
    assert clock.time_s() == 1_005.0
    assert clock.time_ms() == 1_005_000
    assert clock.pending() == [5.0]


def test_a_cancelled_timer_never_runs() -> None:
    clock = ManualClock(start_s=0.0)
    ran: list[str] = []
    handle = clock.call_later(1, lambda: ran.append("cancelled"))
    clock.call_later(2, lambda: ran.append("kept"))

    handle.cancel()
    clock.advance(5)

    assert ran == ["kept"]


def test_a_timer_set_by_a_callback_runs_if_it_falls_due_in_the_same_advance() -> None:
    clock = ManualClock(start_s=0.0)
    ran: list[float] = []

    def tick() -> None:
        ran.append(clock.monotonic())
        if len(ran) < 10:
            clock.call_later(1, tick)

    clock.call_later(1, tick)
    clock.advance(3.5)

    assert ran == [1.0, 2.0, 3.0]
    assert clock.pending() == [0.5]


def test_waiting_for_a_timer_returns_once_another_thread_sets_one() -> None:
    clock = ManualClock(start_s=0.0)
    assert not clock.wait_for_timer(at_least_s=30, timeout=0.01)

    setter = threading.Thread(target=lambda: clock.call_later(60, lambda: None))
    setter.start()

    assert clock.wait_for_timer(at_least_s=30, timeout=5)
    setter.join(timeout=5)


# -- a running CSMS on the manual clock ------------------------------------------------------

STATION = StationDescriptor(
    id=StationId("mc-001"),
    name="Manual-clock depot",
    lat=44.5,
    lon=11.3,
    evses=(EvseDescriptor(id=EvseId("1")),),
)
EVSE = evse_key(STATION.id, EvseId("1"))
COMMAND_TIMEOUT_S = 60.0


@pytest.fixture
def silent_station_csms(
    mosquitto_url: str, mqtt_client: MqttClientFactory
) -> Iterator[tuple[CsmsSystem, ManualClock]]:
    """A CSMS on a ManualClock and one station that is online but never answers a command."""
    clock = ManualClock()
    watcher = FleetWatcher()
    config = CsmsConfig(
        mqtt_url=mosquitto_url,
        client_id="smartcharge-csms-manual-clock",
        command_timeout_s=COMMAND_TIMEOUT_S,
        listeners=(watcher,),
        mqtt_process=False,
    )
    system = build_csms(config, clock=clock)
    try:
        station = mqtt_client(mosquitto_url, "silent-station-mc-001")
        messages: list[StationBirth | StatusReport] = [StationBirth(station=STATION, ts=1, epoch=1)]
        messages.append(
            StatusReport(
                station_id=STATION.id,
                info=EvseInfo(evse_id=EvseId("1"), status=EvseStatus.AVAILABLE, soc=None),
                seq=1,
                ts=1,
                epoch=1,
            )
        )
        for message in messages:
            topic, payload, retain = encode(message)
            station.publish(topic, payload, retain=retain)
        watcher.wait_for(watcher.status_is(EVSE, EvseStatus.AVAILABLE), "the EVSE Available", 20)
        yield system, clock
    finally:
        system.stop()
        pykka.ActorRegistry.stop_all()


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_a_command_times_out_when_the_csms_clock_passes_its_deadline(
    silent_station_csms: tuple[CsmsSystem, ManualClock],
) -> None:
    system, clock = silent_station_csms
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(system.command, EVSE, CommandName.INFO)
        # The EVSE actor has sent the command and set its time-out on the CSMS clock.
        assert clock.wait_for_timer(at_least_s=COMMAND_TIMEOUT_S - 1, timeout=10)
        assert not pending.done()

        clock.advance(COMMAND_TIMEOUT_S)

        with pytest.raises(CommandTimeoutError, match="did not answer info"):
            pending.result(timeout=10)
