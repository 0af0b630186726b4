"""A charge point's transactions and idTags: :class:`TransactionCalls`, mixed into
``gateway.ocpp_link.ChargePointLink`` (its Authorize, StartTransaction and StopTransaction).

A StartTransaction is the start the CSMS asked for (the idTag of its RemoteStartTransaction),
or a driver who badged at the charger: then :class:`~gateway.ocpp_auth.TagAuthority` decides
(``Accepted`` makes it that driver's session) and anything else is refused (the charger ends
it, billed to nobody). Runs on the translator's event loop; storage in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus

from gateway import ocpp_translate as tr
from gateway.ocpp_auth import TagAuthority
from gateway.ocpp_commands import Connector, StationState
from gateway.ocpp_errors import check_meter_reading
from gateway.ocpp_station import StationMqtt, TransactionStore
from protocol import EvseId, EvseStatus, MeterValues, SessionId, evse_key

__all__ = ["TransactionCalls"]

log = logging.getLogger("gateway.ocpp")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class TransactionCalls:
    """The transaction side of a connection (the rest is ``ChargePointLink``)."""

    id: str
    state: StationState
    mqtt: StationMqtt | None
    transactions: TransactionStore
    tags: TagAuthority | None

    if TYPE_CHECKING:  # what the class it is mixed into has (never defined here: the MRO)

        def _connector(self, connector_id: int) -> Connector: ...

        def _publish_status(self, connector_id: int) -> None: ...

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str) -> Any:
        """A registered tag of an enabled account: Accepted; a disabled one's: Blocked."""
        status = await self._tag_status(id_tag)
        return call_result.Authorize(id_tag_info=IdTagInfo(status=status))

    async def _tag_status(self, id_tag: str) -> AuthorizationStatus:
        if self.tags is None:
            return AuthorizationStatus.invalid
        try:
            return await asyncio.to_thread(self.tags.authorize, id_tag)
        except Exception:
            log.exception("OCPP %s: could not look the idTag up", self.id)
            return AuthorizationStatus.invalid

    async def _admit(
        self, connector: Connector, connector_id: int, id_tag: str, session_id: str
    ) -> AuthorizationStatus:
        """A start by badge: whether it may go on (and whose it is, stored)."""
        if self.tags is None:
            return AuthorizationStatus.invalid
        info = connector.info
        reserved = info.reservation_id if info.status is EvseStatus.RESERVED else None
        try:
            admission = await asyncio.to_thread(
                self.tags.admit,
                id_tag,
                session_id=session_id,
                evse_id=evse_key(self.state.station_id, str(connector_id)),
                reservation_id=reserved,
            )
        except Exception:
            log.exception("OCPP %s: could not admit a start by idTag", self.id)
            return AuthorizationStatus.invalid
        if admission.status is AuthorizationStatus.accepted:
            log.info("OCPP %s: connector %d started by a driver's tag", self.id, connector_id)
        return admission.status

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> Any:
        check_meter_reading(meter_start)
        connector = self._connector(connector_id)
        key = (id_tag.upper(), timestamp, meter_start)
        last = connector.last_start
        if last is not None and last[0] == key and connector.transaction_id == last[1]:
            # a retransmission (the charger got no answer): the same transaction, once
            return call_result.StartTransaction(
                transaction_id=last[1], id_tag_info=IdTagInfo(status=last[2])
            )
        pending = connector.pending_session
        until = connector.pending_until_ms
        if until is not None and _now_ms() >= until:
            pending = None  # unanswered and about to expire: the CSMS may have given up
        tag = connector.pending_tag
        remote = pending is not None and tag is not None and id_tag.upper() == tag.upper()
        record = self.transactions.new(
            self.state.station_id, connector_id, pending if remote else None, float(meter_start)
        )
        session_id = record.session_id
        if remote:
            status = AuthorizationStatus.accepted
        else:  # a local start (a badge): a registered driver's, or refused (the CP ends it)
            status = await self._admit(connector, connector_id, id_tag, session_id)
        connector.pending_session = connector.pending_tag = connector.pending_since = None
        connector.transaction_id = record.transaction_id
        connector.last_start = (key, record.transaction_id, status)
        status_now = connector.info.status
        if status_now not in tr.IN_SESSION or status_now is EvseStatus.FINISHING:
            status_now = EvseStatus.PREPARING
        connector.info = tr.with_status(
            replace(
                connector.info,
                session_id=SessionId(session_id),
                energy_wh=float(meter_start),
                session_energy_wh=0.0,
            ),
            status_now,
        )
        self._publish_status(connector_id)
        return call_result.StartTransaction(
            transaction_id=record.transaction_id, id_tag_info=IdTagInfo(status=status)
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self,
        meter_stop: int,
        timestamp: str,
        transaction_id: int,
        reason: str | None = None,
        **_: Any,
    ) -> Any:
        check_meter_reading(meter_stop)
        record = self.transactions.get(self.state.station_id, transaction_id)
        result = call_result.StopTransaction(
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)
        )
        if record is None or record.stopped:
            return result  # unknown, or a retransmission: answered, nothing applied twice
        self.transactions.mark_stopped(record)
        connector = self._connector(record.connector_id)
        current = connector.info.session_id
        if current is not None and current != record.session_id:
            log.info(
                "OCPP %s: late stop of transaction %d, another session runs",
                self.id,
                transaction_id,
            )
            return result  # its connector has moved on: the CSMS keeps the running session
        connector.transaction_id = None
        energy = float(meter_stop)
        session_energy = max(0.0, energy - record.meter_start)
        if self.mqtt is not None:
            self.state.seq += 1
            self.mqtt.publish(
                MeterValues(
                    station_id=self.state.station_id,
                    evse_id=EvseId(str(record.connector_id)),
                    session_id=SessionId(record.session_id),
                    power_w=0.0,
                    energy_wh=energy,
                    soc=connector.info.soc,
                    seq=self.state.seq,
                    ts=_now_ms(),
                    epoch=self.state.epoch,
                )
            )
        connector.info = replace(
            tr.with_status(
                replace(connector.info, session_id=SessionId(record.session_id)),
                EvseStatus.FINISHING,
            ),
            energy_wh=energy,
            session_energy_wh=session_energy,
            stop_reason=tr.stop_reason(reason),
        )
        self._publish_status(record.connector_id)
        return result
