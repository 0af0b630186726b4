"""Messages between actors: immutable, typed values.

Commands are imperative (``SendCommand``), events past tense (``EvseChanged``),
queries start with ``Get``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.evse_state import EvseState
from actors.evse_transition import Effect
from protocol import (
    Command,
    CommandName,
    CorrelationId,
    EvseId,
    EvseInfo,
    Message,
    StationDescriptor,
    StationId,
)

if TYPE_CHECKING:
    import pykka

__all__ = [
    "CommandOutcome",
    "CommandTimedOut",
    "EvseChanged",
    "EvseChangedBatch",
    "EvseCrashed",
    "GetEvseRef",
    "GetState",
    "Inbound",
    "InboundReady",
    "OperatorAlert",
    "Publish",
    "SendCommand",
    "StationChanged",
    "VersionRefused",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """One parsed protocol message from a station, told to the supervisor (tests, tools; the
    bridge hands bursts over through :class:`InboundReady`)."""

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundReady:
    """Parsed station messages wait in ``inbox`` (a :class:`actors.inbox.BatchInbox`):
    the receiver takes them as one batch."""

    inbox: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    """Ask the MQTT bridge to publish (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SendCommand:
    """Send a command to the EVSE's station; ``reply`` gets a :class:`CommandOutcome`.
    ``args`` is the command (one class per command, :mod:`protocol.commands`)."""

    args: Command
    reply: pykka.Future[Any]
    timeout_s: float = 10.0

    @property
    def command(self) -> CommandName:
        return self.args.command


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome:
    """The station's answer to a command."""

    command: CommandName
    accepted: bool
    reason: str | None
    info: EvseInfo | None
    state: EvseState


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandTimedOut:
    correlation_id: CorrelationId


@dataclass(frozen=True, slots=True, kw_only=True)
class GetState:
    """Query: the EVSE actor answers with its :class:`EvseState`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetEvseRef:
    """Query to the supervisor: the live actor of one EVSE."""

    evse_id: EvseId


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseChanged:
    """Event: an EVSE's state changed (fanned out to the supervisor and subscribers)."""

    state: EvseState
    effects: tuple[Effect, ...]
    alert: str | None = None
    """Why the supervisor gave up on the EVSE (shown with it in the read model)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseChangedBatch:
    """Events of one batch, in order (one ``tell`` per subscriber instead of one per event)."""

    events: tuple[EvseChanged, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StationChanged:
    """Event: a station came online (with its descriptor) or went offline."""

    station: StationDescriptor
    online: bool
    ts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseCrashed:
    """Event: an EVSE actor died of an exception (sent by the actor as it ends)."""

    evse_id: EvseId
    last_state: EvseState
    error: str
    actor_urn: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRefused:
    """Bridge -> supervisor: a station speaks another protocol version (refused, not read)."""

    station_id: StationId
    version: object
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorAlert:
    """Something an operator must see: a station offline, an actor restarted or given up."""

    kind: str
    message: str
    ts: int
    station_id: StationId | None = None
    evse_id: EvseId | None = None
