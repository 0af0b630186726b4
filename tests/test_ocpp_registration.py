"""BootNotification Pending -> Accepted, nothing of a charge point published before it is
accepted, and connector 0's status over the connectors' own: the translator's
``ChargePointLink`` on a real WebSocket server, the ``ocpp`` library's ChargePoint as the
client, and the station's MQTT connection replaced by a recorder whose broker "takes the
station" when the test says (``docs/ocpp.md``, "Registration"). Rejected, and connector 0 in
the API, are tested against a real CSMS in tests/test_ocpp_auth.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ocpp.exceptions import SecurityError
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, AvailabilityStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway.ocpp_link import ChargePointLink, StationState
from gateway.ocpp_station import TransactionStore
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseId,
    StationBirth,
    StationId,
    StatusReport,
)
from simulator.ocpp_station import OcppLoop, OcppStation
from tests.driver_client import wait_until
from tests.simulator_support import station as simulated_station
from tests.test_ocpp import WAIT_S, Station, TestChargePoint, _now, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class BrokerRecorder:
    """Stands for ``StationMqtt``: records what would be published; ``take()`` is the broker
    accepting the station's connection."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self._up = asyncio.Event()

    def take(self) -> None:
        self._up.set()

    def is_connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    def publish(self, message: Any) -> None:
        self.published.append(message)


class Translator:
    """One charge point's link, served on the station's own loop (as ``OcppServer`` does,
    without the broker: the link waits for it)."""

    def __init__(self, station: Station, port: int) -> None:
        self.broker = BrokerRecorder()
        self.state = StationState(station_id=StationId("cp-p"), name="pending")
        self.links: list[ChargePointLink] = []
        self._station = station
        self._server: Server = station.run(self._serve(port))

    async def _serve(self, port: int) -> Server:
        return await serve(self._handler, "127.0.0.1", port, subprotocols=["ocpp1.6"])  # type: ignore[list-item]

    async def _handler(self, connection: ServerConnection) -> None:
        link = ChargePointLink(connection, self.state, self.broker, TransactionStore(None))  # type: ignore[arg-type]
        self.links.append(link)
        waiting = asyncio.ensure_future(link.await_broker())
        try:
            with contextlib.suppress(ConnectionClosed):
                await link.start()
        finally:
            waiting.cancel()

    def take(self) -> None:
        self._station.loop.call_soon_threadsafe(self.broker.take)

    def command(self, name: str, args: dict[str, Any]) -> CommandReply:
        """Our command for connector 1, as the CSMS would publish it; its reply."""
        self._station.loop.call_soon_threadsafe(
            self.links[-1].command,
            CommandRequest(
                station_id=StationId("cp-p"),
                id=CorrelationId(f"cmd-{name}"),
                command=CommandName(name),
                evse_id=EvseId("1"),
                expires_at=time.time_ns() // 1_000_000 + 10_000,
                args=args,
            ),
        )
        replies = wait_until(lambda: self.published(CommandReply), f"the reply to {name}")
        reply: CommandReply = replies[-1]
        return reply

    def published(self, kind: type) -> list[Any]:
        return [m for m in list(self.broker.published) if isinstance(m, kind)]

    def close(self) -> None:
        self._station.run(self._close())

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
def pair() -> Iterator[tuple[Station, Translator]]:
    port = free_port()
    station = Station(port, "cp-p", None, None)
    translator = Translator(station, port)
    try:
        yield station, translator
    finally:
        translator.close()
        station.close()


def _boot(station: Station) -> Any:
    return station.call(call.BootNotification(charge_point_model="m", charge_point_vendor="v"))


def _status(station: Station, connector: int, status: str = "Available") -> Any:
    assert station.cp is not None
    payload = call.StatusNotification(
        connector_id=connector, error_code="NoError", status=status, timestamp=_now()
    )
    return station.run(station.cp.call(payload, suppress=False))


def test_a_charge_point_is_pending_until_the_broker_takes_it_then_asked_to_boot_again(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    cp = station.connect()
    booted = _boot(station)
    assert booted.status == "Pending"
    assert booted.interval > 0
    assert station.call(call.Heartbeat()).current_time  # a heartbeat is answered
    with pytest.raises(SecurityError):  # anything else is refused until accepted
        _status(station, 1)
    assert translator.published(StationBirth) == []  # not online for the CSMS

    translator.take()
    assert cp.triggers.get(timeout=WAIT_S) == ("BootNotification", None)
    assert _boot(station).status == "Accepted"
    _status(station, 0)
    _status(station, 1)
    births = translator.published(StationBirth)
    assert [e.id for e in births[-1].station.evses] == ["1"]
    assert [r.info.evse_id for r in translator.published(StatusReport)] == ["1"]


def test_a_charge_point_that_reconnects_without_booting_is_accepted_when_the_broker_takes_it(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    cp = station.connect()
    with pytest.raises(SecurityError):
        _status(station, 1)
    translator.take()

    def accepted() -> bool:
        try:
            _status(station, 1)
        except SecurityError:
            return False
        return True

    wait_until(accepted, "the charge point accepted once the broker took it")
    assert translator.published(StationBirth)
    assert cp.triggers.empty()  # nothing to ask: it never booted


def test_a_connectors_report_while_connector_0_is_down_shows_when_it_is_up(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    station.connect()
    translator.take()
    wait_until(lambda: _boot(station).status == "Accepted", "accepted")
    _status(station, 1)
    _status(station, 2)
    _status(station, 0, "Faulted")

    def shown() -> dict[str, str]:
        return {r.info.evse_id: str(r.info.status) for r in translator.published(StatusReport)}

    assert shown() == {"1": "Faulted", "2": "Faulted"}
    before = len(translator.published(StatusReport))
    _status(station, 1, "Unavailable")  # its own change meanwhile: held, not shown
    assert len(translator.published(StatusReport)) == before
    _status(station, 0, "Available")
    assert shown() == {"1": "Unavailable", "2": "Available"}


class SchedulingChargePoint(TestChargePoint):
    """Answers ChangeAvailability ``Scheduled``: a transaction runs."""

    __test__ = False

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, **kw: Any) -> Any:
        self.availability.put((connector_id, kw["type"]))
        return call_result.ChangeAvailability(status=AvailabilityStatus.scheduled)


def _accepted_with_a_transaction(station: Station, translator: Translator) -> int:
    ws = station.open()
    station.cp = cp = SchedulingChargePoint("cp-p", ws)
    asyncio.run_coroutine_threadsafe(station._serve(cp), station.loop)
    translator.take()
    wait_until(lambda: _boot(station).status == "Accepted", "accepted")
    _status(station, 1)
    started = station.call(
        call.StartTransaction(connector_id=1, id_tag="LOCAL", meter_start=0, timestamp=_now())
    )
    _status(station, 1, "Charging")
    transaction_id: int = started.transaction_id
    return transaction_id


def test_a_limit_during_a_transaction_is_also_its_tx_profile(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    tx = _accepted_with_a_transaction(station, translator)
    until = time.time_ns() // 1_000_000 + 300_000
    limit = {"limit_w": 3_000.0, "fallback_w": 1_400.0, "expires_at": until}
    reply = translator.command("set_limit", limit)
    assert reply.accepted, reply
    assert station.cp is not None
    profiles = [station.cp.profiles.get(timeout=WAIT_S)[1] for _ in range(3)]
    purposes = [(p["charging_profile_purpose"], p["stack_level"]) for p in profiles]
    assert purposes == [("TxDefaultProfile", 0), ("TxDefaultProfile", 1), ("TxProfile", 1)]
    tx_profile = profiles[2]
    assert tx_profile["transaction_id"] == tx
    assert tx_profile["charging_schedule"]["charging_schedule_period"][0]["limit"] == 3_000


def test_a_scheduled_maintenance_is_no_longer_pending_once_the_charger_is_unavailable(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    _accepted_with_a_transaction(station, translator)
    reply = translator.command("maintenance", {"enabled": True})
    assert reply.accepted
    assert reply.info is not None
    assert reply.info.maintenance_pending
    _status(station, 1, "Finishing")
    _status(station, 1, "Unavailable")  # the transaction ended: maintenance begins
    last = translator.published(StatusReport)[-1].info
    assert (str(last.status), last.maintenance, last.maintenance_pending) == (
        "Unavailable",
        True,
        False,
    )


def test_a_connector_running_a_session_keeps_it_while_connector_0_is_down(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    tx = _accepted_with_a_transaction(station, translator)
    _status(station, 0, "Faulted")

    def last() -> str:
        return str(translator.published(StatusReport)[-1].info.status)

    assert last() == "Charging"  # no report: its session goes on until the charger ends it
    stop = call.StopTransaction(meter_stop=500, timestamp=_now(), transaction_id=tx)
    assert station.call(stop).id_tag_info["status"] == "Accepted"
    assert last() == "Finishing"
    _status(station, 1, "Available")  # the session is over: now it shows the charge point
    assert last() == "Faulted"
    _status(station, 0, "Available")
    assert last() == "Available"


def test_the_ocpp_simulator_boots_again_when_asked_after_pending(
    pair: tuple[Station, Translator],
) -> None:
    station, translator = pair
    shared = OcppLoop()
    simulator, _ = simulated_station()
    url = station.url.rsplit("/", 1)[0]
    simulated = OcppStation(simulator, url, None, shared)
    try:
        simulated.start()

        def told_pending() -> bool:
            links = translator.links
            return bool(links) and links[-1].registration is RegistrationStatus.pending

        wait_until(told_pending, "the simulator's boot answered Pending")
        assert not simulated.wait_connected(0)  # still booting, nothing sent
        translator.take()  # the translator asks it to boot again (TriggerMessage)
        assert simulated.wait_connected(WAIT_S)

        def both_connectors() -> bool:  # a birth grows connector by connector
            births = translator.published(StationBirth)
            return bool(births) and {e.id for e in births[-1].station.evses} == {"1", "2"}

        wait_until(both_connectors, "the simulator's birth with both connectors")
    finally:
        simulated.stop()
        shared.stop()
