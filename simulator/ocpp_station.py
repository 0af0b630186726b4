"""A simulated station speaking OCPP 1.6J (``smartcharge fleet --protocol ocpp1.6``).

The same :class:`~simulator.station.StationSimulator` (physics, JSON state, offline queue) and
:class:`~simulator.runner.StationRunner` as an MQTT station; only the transport differs. What
the simulator would publish becomes the charge point's CALLs (status reports ->
StatusNotification, with StartTransaction when a session starts and StopTransaction when it
ends; meter values -> MeterValues), and the CSMS's CALLs become commands for the simulator
(RemoteStartTransaction -> ``start`` with the idTag as the session id, RemoteStopTransaction ->
``stop``, ChangeAvailability -> ``maintenance``, ReserveNow / CancelReservation ->
``reserve`` / ``cancel_reservation``, SetChargingProfile -> ``set_limit``), answered from the
simulator's reply. Every station runs on one shared event loop (:class:`OcppLoop`).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from ocpp.v16 import call
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseId,
    EvseStatus,
    Message,
    MeterValues,
    StatusReport,
    StopReason,
    encode,
)
from protocol.mqtt_settings import BACKOFF_MAX_S, BACKOFF_MIN_S
from simulator.ocpp_point import ChargePointEnd
from simulator.persistence import StationStore
from simulator.runner import StationRunner
from simulator.station import StationSimulator

__all__ = ["OcppLoop", "OcppStation"]

log = logging.getLogger("simulator.ocpp")

COMMAND_TTL_MS: Final = 10_000
IN_SESSION: Final = frozenset(
    {EvseStatus.PREPARING, EvseStatus.CHARGING, EvseStatus.SUSPENDED_EV, EvseStatus.SUSPENDED_EVSE}
)
_STOP_REASONS: Final = {
    StopReason.REMOTE: "Remote",
    StopReason.EV_DISCONNECTED: "EVDisconnected",
    StopReason.LOCAL: "Local",
}


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class OcppLoop:
    """One event loop thread for every OCPP station of a fleet."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ocpp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class _Sent:
    """A :class:`~simulator.runner.Delivery`: done once the CSMS answered its CALL."""

    def __init__(self) -> None:
        self._done = threading.Event()

    def set(self) -> None:
        self._done.set()

    def is_published(self) -> bool:
        return self._done.is_set()

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)


class OcppStation:
    """A simulated station on the CSMS's OCPP endpoint ``url`` (``ws[s]://host:port/ocpp``)."""

    def __init__(
        self,
        simulator: StationSimulator,
        url: str,
        password: str | None,
        shared: OcppLoop,
        *,
        store: StationStore | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.runner = StationRunner(simulator, self._publish, store=store)
        self.simulator = simulator
        self.url = f"{url.rstrip('/')}/{simulator.station_id}"
        self.password, self.tls = password, tls
        self.loop = shared.loop
        self.fallback_w: dict[int, float] = {}
        self._queue: asyncio.Queue[tuple[Message, _Sent]] = asyncio.Queue()
        self._replies: dict[str, CommandReply] = {}
        self._holding = False
        self._held: list[tuple[Message, _Sent]] = []
        self._transactions: dict[str, int] = {}  # our session id -> OCPP transactionId
        self._point: ChargePointEnd | None = None
        self._connected = threading.Event()
        self._stopping = asyncio.Event()
        self._task: concurrent.futures.Future[None] | None = None

    @property
    def station_id(self) -> str:
        return self.simulator.station_id

    # the fleet's side (its main and ticker threads) -----------------------------------

    def start(self) -> None:
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def tick(self, now: float) -> None:
        self.runner.tick(now)

    def stop(self, timeout: float = 5.0) -> None:
        self.runner.wait_delivered(timeout)
        self.loop.call_soon_threadsafe(self._stopping.set)
        if self._task is not None:
            with contextlib.suppress(Exception):
                self._task.result(timeout)
        self.runner.save()

    # commands (on the loop, from the CSMS's CALLs) -------------------------------------

    def info(self, evse_id: str) -> Any:
        try:
            return self.simulator.evse_info(evse_id)
        except KeyError:
            return None

    def session_of(self, transaction_id: int) -> tuple[str, str] | None:
        for session, tx in self._transactions.items():
            if tx == transaction_id:
                for evse in self.simulator.descriptor.evses:
                    if self.simulator.evse_info(evse.id).session_id == session:
                        return evse.id, session
        return None

    def reserved_evse(self, reservation_id: str) -> str | None:
        for evse in self.simulator.descriptor.evses:
            if self.simulator.evse_info(evse.id).reservation_id == reservation_id:
                return evse.id
        return None

    def command(self, name: CommandName, evse_id: str, args: dict[str, Any]) -> CommandReply | None:
        """Hand the simulator one command as the CSMS would send it over MQTT; its reply."""
        now = _now_ms()
        request = CommandRequest(
            station_id=self.simulator.station_id,
            id=CorrelationId(uuid.uuid4().hex),
            command=name,
            evse_id=EvseId(evse_id),
            expires_at=now + COMMAND_TTL_MS,
            args=args,
            ts=now,
        )
        topic, payload, _ = encode(request)
        self.runner.received(topic, payload)
        return self._replies.pop(request.id, None)

    def resend_status(self, evse_id: str) -> None:
        info = self.info(evse_id)
        if info is not None:
            report = StatusReport(
                station_id=self.simulator.station_id, info=info, seq=0, ts=_now_ms()
            )
            self.loop.call_soon_threadsafe(self._enqueue, (report, _Sent()))

    # what the simulator publishes (any thread) -----------------------------------------

    def hold(self, on: bool) -> None:
        """On the loop: keep what is published meanwhile until ``hold(False)``."""
        self._holding = on
        if not on:
            held, self._held = self._held, []
            for item in held:
                self._queue.put_nowait(item)

    def _enqueue(self, item: tuple[Message, _Sent]) -> None:
        if self._holding:
            self._held.append(item)
        else:
            self._queue.put_nowait(item)

    def _publish(self, message: Message) -> _Sent:
        sent = _Sent()
        if isinstance(message, CommandReply):
            self._replies[message.id] = message
            sent.set()
        elif isinstance(message, StatusReport | MeterValues):
            self.loop.call_soon_threadsafe(self._enqueue, (message, sent))
        else:
            sent.set()  # births and offline states: the WebSocket itself says that
        return sent

    # the connection (on the loop) ------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_MIN_S
        while not self._stopping.is_set():
            try:
                await self._session()
                delay = BACKOFF_MIN_S
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                log.warning("OCPP station %s: %s; reconnecting", self.station_id, exc)
            except Exception:  # a bug must not end the station for good: log it, reconnect
                log.exception("OCPP station %s failed; reconnecting", self.station_id)
            finally:
                self._connected.clear()
                self.runner.disconnected()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _session(self) -> None:
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        async with connect(
            self.url,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
            ssl=self.tls,
        ) as ws:
            point = self._point = ChargePointEnd(self, ws)
            reader = asyncio.ensure_future(point.start())
            try:
                await point.boot()
                while not self._queue.empty():  # what was queued offline: the outbox replays it
                    self._queue.get_nowait()
                self.runner.connected()
                self._connected.set()
                await self._send_loop(point, reader)
            finally:
                reader.cancel()

    async def _send_loop(self, point: ChargePointEnd, reader: asyncio.Future[Any]) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                getting = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait(
                    {getting, reader, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                    if reader in done:
                        reader.result()  # raises ConnectionClosed
                    return
                message, sent = getting.result()
                await self._send(point, message)
                sent.set()
        finally:
            stopping.cancel()

    async def _send(self, point: ChargePointEnd, message: Message) -> None:
        if isinstance(message, MeterValues):
            await self._send_meter(point, message)
            return
        assert isinstance(message, StatusReport)
        info, connector = message.info, int(message.info.evse_id)
        session = info.session_id
        stamp = _iso(message.ts)
        if session is not None and session not in self._transactions and info.status in IN_SESSION:
            started = await point.call(
                call.StartTransaction(
                    connector_id=connector,
                    id_tag=session[:20],
                    meter_start=int(info.energy_wh),
                    timestamp=stamp,
                )
            )
            self._transactions[session] = started.transaction_id
        if info.status is EvseStatus.FINISHING and session in self._transactions:
            await point.call(
                call.StopTransaction(
                    meter_stop=int(info.energy_wh),
                    timestamp=stamp,
                    transaction_id=self._transactions.pop(session),
                    reason=_STOP_REASONS.get(info.stop_reason or StopReason.OTHER, "Other"),
                )
            )
        if info.status is not EvseStatus.OFFLINE:
            await point.call(
                call.StatusNotification(
                    connector_id=connector,
                    error_code="NoError",
                    status=str(info.status),
                    timestamp=stamp,
                )
            )

    async def _send_meter(self, point: ChargePointEnd, message: MeterValues) -> None:
        values = [
            {"value": f"{message.energy_wh:.1f}", "measurand": "Energy.Active.Import.Register"},
            {"value": f"{message.power_w:.1f}", "measurand": "Power.Active.Import", "unit": "W"},
        ]
        if message.soc is not None:
            values.append({"value": f"{message.soc:.1f}", "measurand": "SoC", "unit": "Percent"})
        tx = None if message.session_id is None else self._transactions.get(message.session_id)
        await point.call(
            call.MeterValues(
                connector_id=int(message.evse_id),
                transaction_id=tx,
                meter_value=[{"timestamp": _iso(message.ts), "sampledValue": values}],
            )
        )
