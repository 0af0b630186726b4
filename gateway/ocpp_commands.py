"""Our commands carried out over OCPP 1.6J: one function per command, each sending the CALL
that does it and saying whether it was accepted (``docs/ocpp.md``, "Messages").

They change the connector's :class:`Connector` record as the charge point's answer implies;
the caller (``gateway.ocpp_link``) replies and publishes the status reports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ocpp.v16 import call

from gateway import ocpp_translate as tr
from protocol import (
    CancelReservationArgs,
    CommandArgs,
    EvseInfo,
    EvseStatus,
    MaintenanceArgs,
    RejectReason,
    ReserveArgs,
    SetLimitArgs,
    StartArgs,
    StationId,
    StopArgs,
)

__all__ = ["STATION_DOWN", "Connector", "StationState", "carry_out", "refusal"]

log = logging.getLogger("gateway.ocpp")

Call = Callable[[Any], Awaitable[Any]]
"""Send one CALL to the charge point, return its result (raises ``OCPPError`` on a CALLERROR)."""

DEFAULT_RESERVATION_S: Final = 24 * 3600
START_MARGIN_MS: Final = 1_000
"""A StartTransaction sent before the RemoteStartTransaction's answer counts only if it comes
at least this long before the command expires: the CSMS may already have told the driver the
start failed (its time-out and ours end together), and nothing may start late."""
LIMIT_PROFILE_ID: Final = 901
FALLBACK_PROFILE_ID: Final = 900
TX_PROFILE_ID: Final = 902


@dataclass(slots=True)
class Connector:
    info: EvseInfo
    pending_session: str | None = None
    """A session whose RemoteStartTransaction was accepted, not yet started."""
    pending_tag: str | None = None
    """The idTag of that RemoteStartTransaction."""
    pending_since: float | None = None
    """When it was asked for (``time.monotonic()``)."""
    pending_until_ms: int | None = None
    """Until its answer: a StartTransaction for it counts only before this (epoch ms)."""
    transaction_id: int | None = None
    last_start: tuple[tuple[str, str, int], int, Any] | None = None
    """Its last StartTransaction ((idTag upper-cased, timestamp, meterStart), the
    transactionId and the status answered): a retransmission gets the same answer."""
    held: EvseInfo | None = None
    """Its own last state while connector 0 (the whole charge point) is down: ``info`` then
    shows the charge point's status, and this comes back when it is up again."""


MAX_RESERVATION_NUMBERS: Final = 1_000
"""Reservation numbers a charge point's state keeps (``StationState.reservations``)."""

STATION_DOWN: Final = (EvseStatus.UNAVAILABLE, EvseStatus.FAULTED)
"""Connector 0's statuses that every connector shows (OCPP 1.6, StatusNotification)."""


@dataclass(slots=True)
class StationState:
    """What the translator knows of one charge point, kept across its reconnections."""

    station_id: StationId
    name: str
    connectors: dict[int, Connector] = field(default_factory=dict)
    epoch: int = 0
    seq: int = 0
    reservations: dict[str, int] = field(default_factory=dict)
    """Our reservation ids and the OCPP reservationId each was given: the newest
    :data:`MAX_RESERVATION_NUMBERS` (an older one is long over)."""
    last_reservation_number: int = 0

    station_status: EvseStatus | None = None
    """Connector 0's status while it is one of :data:`STATION_DOWN`, else None."""

    def station_reported(self, status: EvseStatus) -> list[int]:
        """Connector 0 reported ``status``: the connectors whose shown state changed.

        Unavailable or Faulted: every connector shows it (its own state is held) but one
        running a session, which ends by its own StopTransaction; anything else: each
        connector shows its own last state again (its meter readings as now)."""
        changed = []
        if status in STATION_DOWN:
            self.station_status = status
            for connector_id, connector in self.connectors.items():
                if connector.held is None and connector.info.status in tr.IN_SESSION:
                    continue
                if connector.held is None:
                    connector.held = connector.info
                connector.info = tr.with_status(connector.info, status)
                changed.append(connector_id)
            return changed
        self.station_status = None
        for connector_id, connector in self.connectors.items():
            held, connector.held = connector.held, None
            if held is not None:
                now = connector.info
                connector.info = replace(
                    held, energy_wh=now.energy_wh, power_w=now.power_w, soc=now.soc
                )
                changed.append(connector_id)
        return changed

    def reservation_number(self, reservation_id: str) -> int:
        number = self.reservations.get(reservation_id)
        if number is None:
            number = self.last_reservation_number % (2**31 - 1) + 1
            self.last_reservation_number = number
            self.reservations[reservation_id] = number
            while len(self.reservations) > MAX_RESERVATION_NUMBERS:
                del self.reservations[next(iter(self.reservations))]
        return number


def refusal(status: EvseStatus) -> RejectReason:
    """The reason to refuse a start or reservation in ``status`` (``docs/protocol.md`` 9)."""
    return {
        EvseStatus.UNAVAILABLE: RejectReason.MAINTENANCE,
        EvseStatus.FAULTED: RejectReason.FAULTED,
        EvseStatus.FINISHING: RejectReason.FINISHING,
        EvseStatus.RESERVED: RejectReason.RESERVED,
    }.get(status, RejectReason.BUSY)


async def carry_out(
    send: Call,
    state: StationState,
    connector_id: int,
    connector: Connector,
    args: CommandArgs,
    expires_at: int,
) -> RejectReason | None:
    """Carry a command out: None when accepted, else the reason it was refused."""
    match args:
        case StartArgs():
            return await _start(send, connector_id, connector, args, expires_at)
        case StopArgs():
            return await _stop(send, connector, args)
        case MaintenanceArgs():
            return await _maintenance(send, connector_id, connector, args)
        case ReserveArgs():
            return await _reserve(send, state, connector_id, connector, args)
        case CancelReservationArgs():
            return await _cancel(send, state, connector, args)
        case SetLimitArgs():
            return await _set_limit(send, connector_id, connector, args)
    return None  # info is answered by the caller (gateway.ocpp_link)


async def _start(
    send: Call, connector_id: int, connector: Connector, args: StartArgs, expires_at: int
) -> RejectReason | None:
    info = connector.info
    tag = tr.id_tag_for(args.session_id)
    if info.status is EvseStatus.RESERVED:
        if args.reservation_id is None or args.reservation_id != info.reservation_id:
            return RejectReason.RESERVED
        tag = tr.id_tag_for(args.reservation_id)  # a reserved connector takes its own idTag
    elif info.status is not EvseStatus.AVAILABLE:
        return refusal(info.status)
    # pending before the CALL: a quick charger may send its StartTransaction before its answer
    connector.pending_session, connector.pending_tag = args.session_id, tag
    connector.pending_since = time.monotonic()
    connector.pending_until_ms = expires_at - START_MARGIN_MS
    try:
        result = await send(call.RemoteStartTransaction(id_tag=tag, connector_id=connector_id))
    except BaseException:  # a CALLERROR, or no answer in time: nothing may start late
        _forget_start(connector, args.session_id)
        raise
    if result.status != "Accepted":
        _forget_start(connector, args.session_id)
        return RejectReason.BUSY
    connector.pending_until_ms = None  # answered: the CSMS knows, the start may come when due
    if connector.info.session_id != args.session_id:  # its StartTransaction did not come first
        connector.info = tr.with_status(
            replace(
                info, session_id=args.session_id, target_soc=args.target_soc, session_energy_wh=0.0
            ),
            EvseStatus.PREPARING,
        )
    return None


def _forget_start(connector: Connector, session_id: str) -> None:
    if connector.pending_session == session_id:
        connector.pending_session = connector.pending_tag = connector.pending_since = None


async def _stop(send: Call, connector: Connector, args: StopArgs) -> RejectReason | None:
    current = connector.info.session_id
    if current is None or connector.info.status is EvseStatus.FINISHING:
        return RejectReason.NO_SESSION
    if args.session_id is not None and args.session_id != current:
        return RejectReason.SESSION_MISMATCH
    if connector.transaction_id is None:
        return RejectReason.NO_SESSION  # started remotely, not yet a transaction
    result = await send(call.RemoteStopTransaction(transaction_id=connector.transaction_id))
    return None if result.status == "Accepted" else RejectReason.BUSY


async def _maintenance(
    send: Call, connector_id: int, connector: Connector, args: MaintenanceArgs
) -> RejectReason | None:
    status = connector.info.status
    if args.enabled and status is EvseStatus.FAULTED:
        return RejectReason.FAULTED
    kind = "Inoperative" if args.enabled else "Operative"
    result = await send(call.ChangeAvailability(connector_id=connector_id, type=kind))
    if result.status == "Rejected":
        return RejectReason.BUSY
    if result.status == "Scheduled":
        connector.info = replace(connector.info, maintenance_pending=args.enabled)
    elif args.enabled:
        connector.info = tr.with_status(connector.info, EvseStatus.UNAVAILABLE)
    elif status is EvseStatus.UNAVAILABLE:
        connector.info = tr.with_status(connector.info, EvseStatus.AVAILABLE)
    return None


_RESERVE_REFUSALS: Final = {
    "Faulted": RejectReason.FAULTED,
    "Occupied": RejectReason.BUSY,
    "Rejected": RejectReason.BUSY,
    "Unavailable": RejectReason.MAINTENANCE,
}


async def _reserve(
    send: Call, state: StationState, connector_id: int, connector: Connector, args: ReserveArgs
) -> RejectReason | None:
    info = connector.info
    again = info.status is EvseStatus.RESERVED and info.reservation_id == args.reservation_id
    if info.status is EvseStatus.RESERVED and not again:
        return RejectReason.RESERVED
    if info.status is not EvseStatus.AVAILABLE and not again:
        return refusal(info.status)
    expires = args.expires_at or time.time_ns() // 1_000_000 + DEFAULT_RESERVATION_S * 1000
    result = await send(
        call.ReserveNow(
            connector_id=connector_id,
            expiry_date=tr.iso(expires),
            id_tag=tr.id_tag_for(args.reservation_id),
            reservation_id=state.reservation_number(args.reservation_id),
        )
    )
    if result.status != "Accepted":
        return _RESERVE_REFUSALS.get(result.status, RejectReason.BUSY)
    connector.info = replace(
        tr.with_status(info, EvseStatus.RESERVED), reservation_id=args.reservation_id
    )
    return None


async def _cancel(
    send: Call, state: StationState, connector: Connector, args: CancelReservationArgs
) -> RejectReason | None:
    info = connector.info
    if info.status is not EvseStatus.RESERVED or info.reservation_id is None:
        return RejectReason.NOT_RESERVED
    if args.reservation_id is not None and args.reservation_id != info.reservation_id:
        return RejectReason.RESERVATION_MISMATCH
    number = state.reservation_number(info.reservation_id)
    result = await send(call.CancelReservation(reservation_id=number))
    if result.status != "Accepted":
        return RejectReason.NOT_RESERVED
    connector.info = tr.with_status(info, EvseStatus.AVAILABLE)
    return None


async def _set_limit(
    send: Call, connector_id: int, connector: Connector, args: SetLimitArgs
) -> RejectReason | None:
    """Two TxDefaultProfiles in W: the limit until ``expires_at`` above the fallback (kept
    until the next ``set_limit``), so the charger falls back by itself, as section 6.4 wants;
    and, during a transaction, the limit as its TxProfile too (until ``expires_at``): not
    every charger applies a new TxDefaultProfile to the transaction already running."""
    now = time.time_ns() // 1_000_000
    if args.fallback_w is not None:
        fallback = tr.charging_profile(FALLBACK_PROFILE_ID, 0, args.fallback_w, start_ms=now)
        result = await send(call.SetChargingProfile(connector_id, fallback))
        if result.status != "Accepted":
            return RejectReason.BUSY
    profile = tr.charging_profile(
        LIMIT_PROFILE_ID, 1, args.limit_w, start_ms=now, valid_to_ms=args.expires_at
    )
    result = await send(call.SetChargingProfile(connector_id, profile))
    if result.status != "Accepted":
        return RejectReason.BUSY
    if connector.transaction_id is not None:
        tx_profile = tr.charging_profile(
            TX_PROFILE_ID,
            1,
            args.limit_w,
            start_ms=now,
            valid_to_ms=args.expires_at,
            transaction_id=connector.transaction_id,
        )
        result = await send(call.SetChargingProfile(connector_id, tx_profile))
        if result.status != "Accepted":  # the default profiles hold; it may have just ended
            log.info("OCPP: TxProfile of transaction %d %s", connector.transaction_id, result)
    return None
