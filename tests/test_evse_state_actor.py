"""The real EvseActor against the same small model as the pure step
(tests/evse_state_support.py): the same traffic through its mailbox and thread, the batches the
supervisor sends and the ref the gateway uses, with a recorder standing in for the MQTT bridge.
"""

from __future__ import annotations

from typing import Any

import pykka
from hypothesis import HealthCheck, settings

from actors.evse import EvseActor, EvseBatch
from actors.evse_state import EvseState
from actors.messages import CommandTimedOut, GetState, Publish, SendCommand
from protocol import CommandRequest, CorrelationId, parse
from tests import evse_state_support
from tests.evse_state_support import WAIT_S, EvseRules, fresh_state

_stop_actors = evse_state_support._stop_actors


class BridgeRecorder(pykka.ThreadingActor):
    """Stands in for the MQTT bridge: keeps every command the EVSE actor publishes."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[CommandRequest] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Publish):
            request = parse(message.topic, message.payload)
            assert isinstance(request, CommandRequest)
            self.requests.append(request)
        return list(self.requests)


class EvseActorMachine(EvseRules):
    """The same traffic through a real EVSE actor (its mailbox and thread, the batches the
    supervisor sends, the ref the gateway uses)."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = BridgeRecorder.start()
        self.ref = EvseActor.start(
            fresh_state(), bridge=self.bridge, supervisor=None, clock_ms=lambda: self.clock
        )

    def deliver(self, event: Any) -> EvseState:
        self.ref.tell(EvseBatch(items=[event]))
        return self.current()

    def send(self, command: SendCommand) -> None:
        self.ref.tell(command)

    def time_out(self, cid: str) -> None:
        self.ref.tell(CommandTimedOut(correlation_id=CorrelationId(cid)))

    def requests(self) -> list[CommandRequest]:
        self.current()  # everything told so far is handled, and published before this
        sent: list[CommandRequest] = self.bridge.ask("requests", timeout=WAIT_S)
        return sent

    def current(self) -> EvseState:
        state: EvseState = self.ref.ask(GetState(), timeout=WAIT_S)
        return state

    def teardown(self) -> None:
        self.ref.stop(timeout=WAIT_S)
        self.bridge.stop(timeout=WAIT_S)


TestEvseActor = EvseActorMachine.TestCase
TestEvseActor.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
