"""One OCPP 1.6J connection, translated to protocol v2 (``docs/ocpp.md``).

:class:`ChargePointLink` is the ``ocpp`` library's central-system ``ChargePoint`` for one
WebSocket: it answers the charge point's CALLs (BootNotification, Heartbeat,
StatusNotification, MeterValues, StartTransaction, StopTransaction) and publishes what they
mean as the station's birth, status reports and meter values; our command requests become
OCPP CALLs (RemoteStartTransaction, RemoteStopTransaction, ChangeAvailability) and their
results our replies. Every CALL is answered: a frame that is not OCPP gets a CALLERROR too.

Runs on the translator's event loop only (``gateway.ocpp_server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from ocpp.exceptions import (
    FormatViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    SecurityError,
)
from ocpp.messages import MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus

from gateway import ocpp_translate as tr
from gateway import ocpp_validation
from gateway.ocpp_auth import TagAuthority
from gateway.ocpp_commands import Connector, StationState
from gateway.ocpp_dispatch import CommandDispatch
from gateway.ocpp_errors import error_frame, spec_error
from gateway.ocpp_station import StationMqtt, TransactionStore
from gateway.ocpp_transactions import TransactionCalls
from protocol import (
    EvseId,
    EvseStatus,
    MeterValues,
    SessionId,
    StatusReport,
)

__all__ = ["ChargePointLink", "StationState"]

log = logging.getLogger("gateway.ocpp")

HEARTBEAT_INTERVAL_S: Final = 300
RATE_PER_S: Final = 20.0
BURST: Final = 100.0
"""A charge point may send 20 frames a second on average, 100 at once; past that it is
disconnected (1008). A real one sends a few a minute."""
PENDING_START_S: Final = 180.0
"""How long an accepted remote start may wait for its StartTransaction (the charger's own
ConnectionTimeOut is usually 60 to 120 s): an Available meanwhile does not cancel it."""
PENDING_INTERVAL_S: Final = 30
"""A charge point told Pending boots again after this, or when asked (TriggerMessage)."""
_BEFORE_ACCEPTED: Final = frozenset({Action.boot_notification, Action.heartbeat})
"""What a charge point not (yet) accepted may send (OCPP 1.6, 4.2: nothing else)."""
RECHECK_S: Final = 10.0
"""A connected charge point's credentials are checked again at its heartbeats, at most this
often (and at its first heartbeat)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ChargePointLink(TransactionCalls, CommandDispatch, ChargePoint):
    """A charge point's WebSocket, its :class:`StationState` and its :class:`StationMqtt`."""

    def __init__(
        self,
        connection: Any,
        state: StationState,
        mqtt: StationMqtt | None,
        transactions: TransactionStore,
        still_allowed: Callable[[], Awaitable[bool]] | None = None,
        tags: TagAuthority | None = None,
    ) -> None:
        super().__init__(state.station_id, connection, response_timeout=30)
        self.tags = tags
        self._still_allowed = still_allowed
        self._checked_at: float | None = None
        self.state = state
        self.mqtt = mqtt
        self.transactions = transactions
        self._replied: dict[str, None] = {}
        self._tokens, self._refilled = BURST, time.monotonic()
        self._closing: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.registration: RegistrationStatus | None = None
        """The answer to its last BootNotification on this connection (None: none yet)."""
        self.accepted = False
        """Online for the CSMS: until then nothing is published and its CALLs but
        BootNotification and Heartbeat are refused (``SecurityError``)."""

    # ------------------------------------------------------------------ frames

    async def route_message(self, raw_msg: Any) -> None:
        """As the library's, but a frame that is not OCPP is answered with a CALLERROR and the
        error codes are OCPP 1.6's (:func:`spec_error`). A flood closes the connection."""
        if self._closing is not None:
            return  # being disconnected: what is still queued is read and dropped
        if not self._allow():
            log.warning("OCPP %s: more than %g frames a second, disconnecting", self.id, RATE_PER_S)
            # not awaited here: the loop must go on reading for the close handshake to finish
            self._closing = asyncio.ensure_future(
                self._connection.close(1008, "message rate exceeded")
            )
            return
        if not isinstance(raw_msg, str):
            await self._send(error_frame(None, FormatViolationError(details={})))
            return
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            log.info("OCPP %s: malformed frame (%s)", self.id, exc.code)
            await self._send(error_frame(raw_msg, exc))
            return
        if msg.message_type_id == MessageType.Call:
            if not isinstance(msg.unique_id, str) or not isinstance(msg.payload, dict):
                await self._send(error_frame(raw_msg, FormatViolationError(details={})))
                return
            if not self.accepted and msg.action not in _BEFORE_ACCEPTED:
                refused = SecurityError(description="not accepted: send a BootNotification")
                await self._send(msg.create_call_error(refused).to_json())
                return
            try:
                await self._handle_call(msg)
            except OCPPError as exc:
                await self._send(msg.create_call_error(spec_error(exc, str(msg.action))).to_json())
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            self._response_queue.put_nowait(msg)

    def _allow(self) -> bool:
        """A token bucket: ``RATE_PER_S`` frames a second, ``BURST`` at once."""
        now = time.monotonic()
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * RATE_PER_S)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    # ------------------------------------------------------------------ publishing

    def _publish_status(self, connector_id: int) -> None:
        if self.mqtt is None or not self.accepted:
            return
        info = self.state.connectors[connector_id].info
        self.state.seq += 1
        self.mqtt.publish(
            StatusReport(
                station_id=self.state.station_id,
                info=info,
                seq=self.state.seq,
                ts=_now_ms(),
                epoch=self.state.epoch,
            )
        )

    def _publish_birth(self) -> None:
        if self.mqtt is None or not self.accepted or not self.state.connectors:
            return
        self.mqtt.publish(
            tr.birth(
                self.state.station_id,
                self.state.name,
                list(self.state.connectors),
                epoch=self.state.epoch,
                ts=_now_ms(),
            )
        )

    def _connector(self, connector_id: int) -> Connector:
        """The connector, announced in a new birth the first time it is seen."""
        connector = self.state.connectors.get(connector_id)
        if connector is None:
            if not 1 <= connector_id <= tr.MAX_CONNECTORS:
                raise PropertyConstraintViolationError(
                    details={"cause": f"connectorId must be 1 to {tr.MAX_CONNECTORS}"}
                )
            connector = Connector(info=tr.idle_info(str(connector_id)))
            self.state.connectors[connector_id] = connector
            self._publish_birth()
        return connector

    def announce(self) -> None:
        """After a (re)connection: the birth and every known connector's status."""
        self._publish_birth()
        for connector_id in self.state.connectors:
            self._publish_status(connector_id)

    # ------------------------------------------------------------------ CALLs from the CP

    # ------------------------------------------------------------------ registration

    def accept(self) -> None:
        """The charge point is online for the CSMS from now: its birth and statuses."""
        if not self.accepted:
            self.accepted = True
            self.announce()

    async def await_broker(self) -> None:
        """A charge point the CSMS could not take at its connection (the broker did not take
        the station yet): accepted once it does. One told Pending is asked to boot again then
        (TriggerMessage), one that did not boot (a reconnection) is accepted at once."""
        if self.mqtt is None:
            return
        await self.mqtt.wait_connected()
        if self.registration is RegistrationStatus.pending:
            with contextlib.suppress(OCPPError, TimeoutError):
                await self.call(call.TriggerMessage(requested_message="BootNotification"), False)
        elif self.registration is None:
            self.accept()

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        """Rejected: its credentials were revoked since the handshake (then disconnected);
        Pending: the CSMS cannot take it yet (its station's broker connection is not up);
        otherwise Accepted, and online for the CSMS from then on."""
        interval = HEARTBEAT_INTERVAL_S
        if self._still_allowed is not None and not await self._still_allowed():
            status = RegistrationStatus.rejected
        elif self.mqtt is not None and not self.mqtt.is_connected():
            status, interval = RegistrationStatus.pending, PENDING_INTERVAL_S
        else:
            status = RegistrationStatus.accepted
        log.info(
            "OCPP %s: boot (%s %s): %s", self.id, charge_point_vendor, charge_point_model, status
        )
        self.registration = status
        if status is RegistrationStatus.accepted:
            self.accept()
        else:
            self.accepted = False
        return call_result.BootNotification(
            current_time=_iso_now(), interval=interval, status=status
        )

    @after(Action.boot_notification)
    async def after_boot(self, **_: Any) -> None:
        if self.registration is RegistrationStatus.rejected and self._closing is None:
            self._closing = asyncio.ensure_future(
                self._connection.close(1008, "registration rejected")
            )

    @on(Action.heartbeat)
    def on_heartbeat(self) -> Any:
        return call_result.Heartbeat(current_time=_iso_now())

    @after(Action.heartbeat)
    async def after_heartbeat(self) -> None:
        """At most every ``RECHECK_S``: a charge point revoked meanwhile is disconnected."""
        now = time.monotonic()
        if self._still_allowed is None or self._closing is not None:
            return
        if self._checked_at is not None and now - self._checked_at < RECHECK_S:
            return
        self._checked_at = now
        if not await self._still_allowed():
            log.info("OCPP %s: credentials revoked, disconnecting", self.id)
            self._closing = asyncio.ensure_future(
                self._connection.close(1008, "credentials revoked")
            )

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        new = tr.evse_status(status)
        if connector_id == 0 or new is None:  # connector 0: the charge point itself
            log.info("OCPP %s: station status %s (%s)", self.id, status, error_code)
            if connector_id == 0 and new is not None:
                for changed in self.state.station_reported(new):
                    self._publish_status(changed)
            return call_result.StatusNotification()
        connector = self._connector(connector_id)
        shown, down = connector.info, self.state.station_status
        connector.info, connector.held = connector.held or shown, None
        changed = self._own_status(connector, new)
        if down is not None and connector.info.status not in tr.IN_SESSION:
            # the charge point is down: its own state is kept for when it is up
            connector.held, connector.info = connector.info, tr.with_status(shown, down)
            changed = shown.status is not down
        if changed:
            self._publish_status(connector_id)
        return call_result.StatusNotification()

    def _own_status(self, connector: Connector, new: EvseStatus) -> bool:
        """The connector's own state after it reported ``new``; False: nothing changed."""
        info = connector.info
        if new is EvseStatus.AVAILABLE and self._still_pending(connector):
            # a remote start the charger accepted waits for the cable: still Preparing for us
            # (a TriggerMessage's Available must not make us forget it)
            return False
        if new in tr.IN_SESSION and info.session_id is None:
            if connector.pending_session is None:
                new = EvseStatus.AVAILABLE  # plugged in, nothing started: still startable
            else:
                info = replace(info, session_id=SessionId(connector.pending_session))
        if new not in tr.IN_SESSION:
            connector.pending_session = connector.pending_tag = connector.pending_since = None
            connector.transaction_id = None
        if new is EvseStatus.UNAVAILABLE:  # a Scheduled maintenance has begun
            info = replace(info, maintenance_pending=False)
        connector.info = tr.with_status(info, new)
        return True

    def _still_pending(self, connector: Connector) -> bool:
        if connector.pending_session is None or connector.pending_since is None:
            return False
        if time.monotonic() - connector.pending_since < PENDING_START_S:
            return True
        connector.pending_session = connector.pending_tag = connector.pending_since = None
        return False

    @on(Action.meter_values)
    def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any
    ) -> Any:
        if connector_id == 0:
            return call_result.MeterValues()
        connector = self._connector(connector_id)
        sample = tr.meter_sample(meter_value)
        info = connector.info
        energy = info.energy_wh if sample.energy_wh is None else sample.energy_wh
        power = info.power_w if sample.power_w is None else sample.power_w
        soc = info.soc if sample.soc is None else sample.soc
        connector.info = replace(info, energy_wh=energy, power_w=power, soc=soc)
        record = None
        if connector.transaction_id is not None:
            record = self.transactions.get(self.state.station_id, connector.transaction_id)
        if record is not None and info.session_id is not None and self.mqtt is not None:
            connector.info = replace(
                connector.info, session_energy_wh=max(0.0, energy - record.meter_start)
            )
            self.state.seq += 1
            self.mqtt.publish(
                MeterValues(
                    station_id=self.state.station_id,
                    evse_id=EvseId(str(connector_id)),
                    session_id=info.session_id,
                    power_w=power,
                    energy_wh=energy,
                    soc=soc,
                    seq=self.state.seq,
                    ts=_now_ms(),
                    epoch=self.state.epoch,
                )
            )
        return call_result.MeterValues()


ocpp_validation.remember_signatures(ChargePointLink)
