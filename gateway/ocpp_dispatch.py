"""Our commands for one OCPP connection: :class:`CommandDispatch`, mixed into
``gateway.ocpp_link.ChargePointLink``. Each command request from the CSMS runs in its own task,
is carried out over OCPP (``gateway.ocpp_commands``) and replied to exactly once; a charge
point that does not answer in time gets no reply sent for it, so the CSMS times out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from gateway import ocpp_translate as tr
from gateway.ocpp_commands import Connector, StationState, carry_out
from gateway.ocpp_station import StationMqtt
from protocol import CommandName, CommandRequest, ProtocolError, RejectReason, command_args

__all__ = ["REPLIED_IDS_KEPT", "CommandDispatch"]

log = logging.getLogger("gateway.ocpp")

REPLIED_IDS_KEPT: Final = 256


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CommandDispatch:
    """The command side of a connection (its CALL side is ``ChargePointLink``)."""

    id: str
    state: StationState
    mqtt: StationMqtt | None
    _replied: dict[str, None]
    _tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:  # what the class it is mixed into has (never defined here: the MRO)

        async def call(self, payload: Any, suppress: bool = True) -> Any: ...

        def _publish_status(self, connector_id: int) -> None: ...

    def command(self, request: CommandRequest) -> None:
        """A command from the CSMS (on the loop): handled in a task, replied exactly once."""
        if request.id in self._replied:
            return
        self._replied[request.id] = None
        while len(self._replied) > REPLIED_IDS_KEPT:
            del self._replied[next(iter(self._replied))]
        task = asyncio.ensure_future(self._command(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_commands(self) -> None:
        """The connection is gone: commands still waiting for the charge point end (unreplied,
        so the CSMS times out)."""
        for task in list(self._tasks):
            task.cancel()

    def _reply(self, request: CommandRequest, accepted: bool, reason: str | None = None) -> None:
        if self.mqtt is None:
            return
        connector = self._known(request.evse_id)
        info = None if connector is None else connector.info
        self.mqtt.publish(tr.reply(request, accepted, info, reason=reason, ts=_now_ms()))

    def _known(self, evse_id: str) -> Connector | None:
        if not evse_id.isdigit():
            return None
        return self.state.connectors.get(int(evse_id))

    async def _command(self, request: CommandRequest) -> None:
        connector = self._known(request.evse_id)
        if connector is None:
            self._reply(request, False, RejectReason.UNKNOWN_EVSE)
            return
        remaining_s = (request.expires_at - _now_ms()) / 1000
        if remaining_s <= 0:
            self._reply(request, False, RejectReason.EXPIRED)
            return
        try:
            args = command_args(request)
        except ProtocolError:
            self._reply(request, False, RejectReason.INVALID_COMMAND)
            return
        connector_id = int(request.evse_id)
        if args is None:  # info: what we know now, and the charger asked to say it again
            self._reply(request, True)
            with contextlib.suppress(OCPPError, TimeoutError):
                async with asyncio.timeout(remaining_s):
                    await self._send_call(
                        call.TriggerMessage(
                            requested_message="StatusNotification", connector_id=connector_id
                        )
                    )
            return
        try:
            async with asyncio.timeout(remaining_s):
                outcome = await carry_out(
                    self._send_call, self.state, connector_id, connector, args, request.expires_at
                )
        except TimeoutError:
            log.warning("OCPP %s: no answer to %s in time", self.id, request.command)
            return  # no reply: the CSMS times out, and nothing runs late
        except OCPPError as exc:
            log.info("OCPP %s: CALLERROR %s for %s", self.id, exc.code, request.command)
            outcome = RejectReason.INVALID_COMMAND
        accepted = outcome is None
        self._reply(request, accepted, outcome)
        if accepted and request.command not in (CommandName.INFO, CommandName.SET_LIMIT):
            self._publish_status(connector_id)

    async def _send_call(self, payload: Any) -> Any:
        return await self.call(payload, suppress=False)
