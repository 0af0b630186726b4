"""The charge point's end of a simulated OCPP station's WebSocket: the CSMS's CALLs, turned
into commands for the simulator (``simulator.ocpp_station``, which says the mapping)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action

from protocol import CommandName

if TYPE_CHECKING:
    from simulator.ocpp_station import OcppStation

__all__ = ["ChargePointEnd"]

_RESERVE_ANSWERS: Final = {
    "faulted": "Faulted",
    "maintenance": "Unavailable",
    "busy": "Occupied",
    "finishing": "Occupied",
    "reserved": "Occupied",
}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class ChargePointEnd(ChargePoint):
    """The charge point's end of the WebSocket: the CSMS's CALLs, as commands."""

    def __init__(self, station: OcppStation, connection: Any) -> None:
        super().__init__(station.station_id, connection, response_timeout=30)
        self.station = station
        self.boot_again = asyncio.Event()
        """Set by a TriggerMessage for BootNotification (the CSMS answered Pending)."""

    async def boot(self) -> None:
        """BootNotification until Accepted: after each other answer, its interval or the
        CSMS's TriggerMessage, whichever first (OCPP 1.6, 4.2)."""
        boot = call.BootNotification(
            charge_point_model="simulator", charge_point_vendor="smartcharge"
        )
        while True:
            result = await self.call(boot)
            if result is not None and result.status == "Accepted":
                return
            interval = 10 if result is None else max(1, int(result.interval))
            self.boot_again.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.boot_again.wait(), interval)

    async def route_message(self, raw_msg: Any) -> None:
        """What a CALL makes the simulator say waits until the CALL is answered, as a real
        charger answers RemoteStartTransaction before it sends StartTransaction."""
        self.station.hold(True)
        try:
            await super().route_message(raw_msg)
        finally:
            self.station.hold(False)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> Any:
        evse = str(connector_id or 1)
        args: dict[str, Any] = {"session_id": id_tag}
        info = self.station.info(evse)
        if info is not None and info.reservation_id is not None:
            args["reservation_id"] = info.reservation_id
        reply = self.station.command(CommandName.START, evse, args)
        status = "Accepted" if reply is not None and reply.accepted else "Rejected"
        return call_result.RemoteStartTransaction(status=status)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        found = self.station.session_of(transaction_id)
        reply = None
        if found is not None:
            evse, session = found
            reply = self.station.command(CommandName.STOP, evse, {"session_id": session})
        status = "Accepted" if reply is not None and reply.accepted else "Rejected"
        return call_result.RemoteStopTransaction(status=status)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, **kw: Any) -> Any:
        enabled = kw["type"] == "Inoperative"
        reply = self.station.command(
            CommandName.MAINTENANCE, str(connector_id), {"enabled": enabled}
        )
        if reply is None or not reply.accepted:
            return call_result.ChangeAvailability(status="Rejected")
        pending = reply.info is not None and reply.info.maintenance_pending
        return call_result.ChangeAvailability(status="Scheduled" if pending else "Accepted")

    @on(Action.reserve_now)
    def on_reserve_now(
        self, connector_id: int, expiry_date: str, reservation_id: int, **_: Any
    ) -> Any:
        args = {"reservation_id": f"r{reservation_id}", "expires_at": _ms(expiry_date)}
        reply = self.station.command(CommandName.RESERVE, str(connector_id), args)
        if reply is not None and reply.accepted:
            return call_result.ReserveNow(status="Accepted")
        reason = "" if reply is None else str(reply.reason)
        return call_result.ReserveNow(status=_RESERVE_ANSWERS.get(reason, "Rejected"))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> Any:
        evse = self.station.reserved_evse(f"r{reservation_id}")
        reply = None
        if evse is not None:
            args = {"reservation_id": f"r{reservation_id}"}
            reply = self.station.command(CommandName.CANCEL_RESERVATION, evse, args)
        status = "Accepted" if reply is not None and reply.accepted else "Rejected"
        return call_result.CancelReservation(status=status)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: Any) -> Any:
        profile = cs_charging_profiles
        limit = float(profile["charging_schedule"]["charging_schedule_period"][0]["limit"])
        valid_to = profile.get("valid_to")
        if valid_to is None:  # the fallback, below the limit until its validTo
            self.station.fallback_w[connector_id] = limit
            return call_result.SetChargingProfile(status="Accepted")
        args: dict[str, Any] = {"limit_w": limit, "expires_at": _ms(valid_to)}
        if connector_id in self.station.fallback_w:
            args["fallback_w"] = self.station.fallback_w[connector_id]
        reply = self.station.command(CommandName.SET_LIMIT, str(connector_id), args)
        status = "Accepted" if reply is not None and reply.accepted else "Rejected"
        return call_result.SetChargingProfile(status=status)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, **_: Any) -> Any:
        ok = requested_message in ("StatusNotification", "BootNotification")
        return call_result.TriggerMessage(status="Accepted" if ok else "NotImplemented")

    @after(Action.trigger_message)
    def after_trigger(self, requested_message: str, connector_id: int | None = None) -> None:
        if requested_message == "StatusNotification":
            self.station.resend_status(str(connector_id or 1))
        elif requested_message == "BootNotification":
            self.boot_again.set()
