"""The charging station's logic: a plain class, no threads, no sockets, no clock of its own.

:class:`StationSimulator` turns inputs (a command, the passing of simulated
time, a (re)connection) into the protocol messages to publish, in order. Its
transport (:mod:`simulator.mqtt_station`) and its persistence
(:mod:`simulator.runner`) are separate so tests drive it directly with a
:class:`~simulator.clock.ManualClock`. It is not thread-safe: whoever shares
it between threads (the paho thread and the fleet ticker) holds a lock.

Protocol version 2 on the station side: each process start takes a new boot
``epoch`` (greater than the saved one) carried by the birth and every status and
meter message; wire timestamps, the epoch and command expiry read the *wall*
clock, as the CSMS does, while the physics runs on the simulated one (``--speed``);
an expired command is refused with ``expired``; session-critical messages wait
in an :class:`~simulator.outbox.Outbox` until the broker acknowledges them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from protocol import (
    CommandReply,
    CommandRequest,
    EvseId,
    EvseInfo,
    Message,
    MeterValues,
    ProtocolError,
    RejectReason,
    ReserveArgs,
    SetLimitArgs,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    command_args,
    commands_topic,
    parse,
)
from simulator import evse
from simulator.clock import Clock
from simulator.evse import EventKind, EvseEvent, EvseSpec, EvseState
from simulator.outbox import Outbox, OutboxKey
from simulator.persistence import (
    FORMAT,
    SnapshotError,
    adopt_saved_evse_ids,
    state_from_json,
    state_to_json,
)

__all__ = ["SEQ_LEASE", "StationSimulator"]

log = logging.getLogger("simulator.station")

#: ``seq`` values handed out per checkpoint: the file always holds a number above every
#: ``seq`` already published, so a crash between two saves never reuses one.
SEQ_LEASE: Final = 10_000

#: Command ids remembered to ignore a QoS 1 redelivery (docs/protocol.md section 6.3: at
#: least 256). Not saved: after a restart, ``expires_at`` stops a redelivered command.
REMEMBERED_COMMANDS: Final = 1024


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class StationSimulator:
    """One charging station with its EVSEs: commands and time in, messages out.

    ``seed`` makes every random draw (cars, unplug delays) replayable; ``snapshot``
    (from :meth:`checkpoint`, via a :class:`~simulator.persistence.StationStore`)
    resumes a previous run: statuses, sessions, energy registers, ``seq``, the
    last boot epoch and the outbox. ``clock`` drives the physics; ``wall_clock``
    (default: ``clock``, right for a clock at real speed) stamps what the CSMS
    compares with its own clock.
    """

    def __init__(
        self,
        descriptor: StationDescriptor,
        *,
        clock: Clock,
        wall_clock: Clock | None = None,
        seed: int = 0,
        meter_interval: float = 5.0,
        snapshot: Mapping[str, Any] | None = None,
    ) -> None:
        if not meter_interval > 0:
            raise ValueError(f"meter_interval must be positive, not {meter_interval!r}")
        if snapshot is not None:
            descriptor = adopt_saved_evse_ids(descriptor, snapshot)
        self._descriptor = descriptor
        self._clock = clock
        self._wall = clock if wall_clock is None else wall_clock
        self._last_ts = 0
        self._seed = seed
        self._commands_topic = commands_topic(descriptor.id)
        self._specs = {
            e.id: EvseSpec(
                descriptor=e,
                rng_key=f"{seed}:{descriptor.id}",
                meter_interval=meter_interval,
            )
            for e in descriptor.evses
        }
        self._states = {evse_id: EvseState(evse_id=evse_id) for evse_id in self._specs}
        self._seq = 0
        self._seq_leased = 0
        self._status_dirty = True
        self._progress_dirty = False
        self._outbox = Outbox()
        self._handled: dict[str, None] = {}  # command ids, oldest first
        saved_epoch = -1
        if snapshot is not None:
            saved_epoch = self._restore(snapshot)
        self._epoch = max(saved_epoch + 1, _ms(self._wall.now()))

    # ------------------------------------------------------------------ queries

    @property
    def station_id(self) -> StationId:
        return self._descriptor.id

    @property
    def descriptor(self) -> StationDescriptor:
        return self._descriptor

    @property
    def seq(self) -> int:
        """The last sequence number handed out."""
        return self._seq

    @property
    def epoch(self) -> int:
        """This process's boot epoch: greater than any earlier run's (it is saved)."""
        return self._epoch

    @property
    def outbox(self) -> Outbox:
        """Session-critical messages the broker has not acknowledged yet."""
        return self._outbox

    @property
    def needs_save(self) -> bool:
        """A status changed (or the ``seq`` lease ran out) since the last checkpoint.

        True before the first checkpoint too, so the boot epoch is on disk before any
        message carries it."""
        return self._status_dirty or self._seq >= self._seq_leased

    @property
    def has_progress(self) -> bool:
        """Meter samples were produced since the last checkpoint (worth a lazy save)."""
        return self._progress_dirty

    def evse_info(self, evse_id: str) -> EvseInfo:
        return self._states[EvseId(evse_id)].info()

    def evse_state(self, evse_id: str) -> EvseState:
        return self._states[EvseId(evse_id)]

    # ------------------------------------------------------------------ inputs

    def online_messages(self) -> list[Message]:
        """What to publish on every (re)connection: what the outbox kept (oldest first,
        with their own epoch and seq), then the birth, then every EVSE's status."""
        birth = StationBirth(station=self._descriptor, ts=self._stamp(), epoch=self._epoch)
        fresh = [self._status(state) for state in self._states.values()]
        return [*self._outbox.messages(), birth, *fresh]

    def delivered(self, key: OutboxKey) -> None:
        """The broker acknowledged the message ``(epoch, seq)``: the outbox forgets it."""
        if self._outbox.delivered(key):
            self._progress_dirty = True

    def offline_message(self, reason: str = "shutdown") -> StationOffline:
        """The retained ``state`` for a clean shutdown (or, with the default of
        :class:`StationOffline`, the last will)."""
        return StationOffline(station_id=self.station_id, ts=self._wall_ms(), reason=reason)

    def last_will(self) -> StationOffline:
        return StationOffline(station_id=self.station_id, ts=self._wall_ms())

    def handle_payload(
        self, topic: str, payload: bytes, *, retained: bool = False
    ) -> list[Message]:
        """An MQTT message: ours only if it is on our own commands topic and not retained
        (the CSMS never retains a command: a retained one is stale or forged)."""
        if topic != self._commands_topic:
            log.debug("Ignoring a message on %s: not our commands topic", topic[:200])
            return []
        if retained:
            log.warning("Ignoring a retained command on %s", topic)
            return []
        try:
            request = parse(topic, payload)
        except ProtocolError as exc:
            log.warning("Dropping a malformed command on %s: %s", topic, exc)
            return []
        if not isinstance(request, CommandRequest):  # pragma: no cover - parse keys on the topic
            return []
        log.info("Received command %s from the commands topic %s", request.command, topic)
        return self.handle_command(request)

    def handle_command(self, request: CommandRequest) -> list[Message]:
        """Apply one command: its reply first, then any status report or meter sample."""
        if request.station_id != self.station_id:
            log.warning("Ignoring a command for station %s", request.station_id)
            return []
        if request.id in self._handled:  # QoS 1 delivered it twice: no second run or reply
            log.info("Ignoring command %s: already handled", request.id)
            return []
        self._handled[request.id] = None
        if len(self._handled) > REMEMBERED_COMMANDS:
            del self._handled[next(iter(self._handled))]
        now = self._clock.now()
        spec = self._specs.get(request.evse_id)
        if spec is None:
            return [self._reply(request, RejectReason.UNKNOWN_EVSE, None)]
        caught_up = self._advance(spec, now)  # e.g. a driver who left a moment ago
        state = self._states[spec.evse_id]
        if self._wall_ms() > request.expires_at:  # on the CSMS's clock: never run late
            log.warning(
                "Refusing %s for Evse %s: it expired at %d", request.command, spec.evse_id,
                request.expires_at,
            )  # fmt: skip
            return [*caught_up, self._reply(request, RejectReason.EXPIRED, state.info())]
        try:
            args = command_args(request)
        except ProtocolError as exc:
            log.warning("Rejecting %s for Evse %s: %s", request.command, spec.evse_id, exc)
            reply = self._reply(request, RejectReason.INVALID_COMMAND, state.info())
            return [*caught_up, reply]
        if isinstance(args, ReserveArgs | SetLimitArgs) and args.expires_at is not None:
            args = replace(args, expires_at=self._on_our_clock(args.expires_at, request.ts, now))
        outcome = evse.apply(spec, state, args, now)
        self._states[spec.evse_id] = outcome.state
        if outcome.reason is not None:
            log.info("Evse %s rejected %s: %s", spec.evse_id, request.command, outcome.reason)
        reply = self._reply(request, outcome.reason, outcome.state.info())
        return [*caught_up, reply, *self._messages(outcome.events)]

    def tick(self, now: float | None = None) -> list[Message]:
        """Let simulated time pass up to ``now`` (default: the clock's) on every EVSE."""
        now = self._clock.now() if now is None else now
        out: list[Message] = []
        for spec in self._specs.values():
            out.extend(self._advance(spec, now))
        return out

    # ------------------------------------------------------------------ persistence

    def checkpoint(self) -> dict[str, Any]:
        """A JSON-able snapshot to save now; marks the state as saved and leases more ``seq``."""
        now = self._clock.now()
        self._seq_leased = self._seq + SEQ_LEASE
        self._status_dirty = self._progress_dirty = False
        return {
            "format": FORMAT,
            "station_id": self.station_id,
            "seed": self._seed,
            "seq": self._seq_leased,
            "epoch": self._epoch,
            "saved_at": now,
            "outbox": self._outbox.to_json(),
            "evses": {eid: state_to_json(st, now) for eid, st in self._states.items()},
        }

    def _restore(self, snapshot: Mapping[str, Any]) -> int:
        """Resume from a checkpoint; returns the saved boot epoch (-1 before version 2)."""
        if snapshot.get("station_id") != self.station_id:
            raise SnapshotError(
                f"snapshot of {snapshot.get('station_id')!r}, not {self.station_id}"
            )
        now = self._clock.now()
        raw_evses = snapshot.get("evses")
        if not isinstance(raw_evses, dict) or not isinstance(snapshot.get("seq"), int):
            raise SnapshotError("snapshot without 'evses' or 'seq'")
        for evse_id, raw in raw_evses.items():
            if evse_id in self._specs:  # EVSEs removed from the config are forgotten
                self._states[evse_id] = state_from_json(evse_id, raw, now)
        self._seq = self._seq_leased = int(snapshot["seq"])
        epoch, outbox = snapshot.get("epoch", -1), snapshot.get("outbox", [])
        if not isinstance(epoch, int) or not isinstance(outbox, list):
            raise SnapshotError("snapshot with a bad 'epoch' or 'outbox'")
        self._outbox = Outbox.from_json(outbox, self.station_id)
        return epoch

    # ------------------------------------------------------------------ messages

    def _advance(self, spec: EvseSpec, now: float) -> list[Message]:
        outcome = evse.advance(spec, self._states[spec.evse_id], now)
        self._states[spec.evse_id] = outcome.state
        return self._messages(outcome.events)

    def _on_our_clock(self, expires_at: int, sent_ms: int, now: float) -> int:
        """``expires_at`` (a reservation's or a power limit's) is on the CSMS's clock: keep the
        same real duration on ours.

        With ``--speed`` the simulated clock runs ahead of the CSMS's, so the
        reservation's (or limit's) length from the request's ``ts`` is scaled, not its end time.
        """
        if sent_ms <= 0:
            return expires_at
        speed = float(getattr(self._clock, "speed", 1.0))
        length_ms = max(0, expires_at - sent_ms) * speed
        return int(now * 1000 + length_ms)

    def _wall_ms(self) -> int:
        return _ms(self._wall.now())

    def _stamp(self) -> int:
        """Wall-clock epoch ms (what the CSMS's clock says, whatever ``--speed``), never
        earlier than anything this station already sent."""
        self._last_ts = max(self._last_ts, self._wall_ms())
        return self._last_ts

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _status(self, state: EvseState) -> StatusReport:
        self._status_dirty = True
        return StatusReport(
            station_id=self.station_id,
            info=state.info(),
            seq=self._next_seq(),
            ts=self._stamp(),
            epoch=self._epoch,
        )

    def _messages(self, events: Iterable[EvseEvent]) -> list[Message]:
        """The messages for these events; the session-critical ones also enter the outbox."""
        out: list[Message] = []
        for event in events:
            if event.kind is EventKind.STATUS:
                out.append(self._status(event.state))
                continue
            self._progress_dirty = True
            info = event.state.info()
            out.append(
                MeterValues(
                    station_id=self.station_id,
                    evse_id=info.evse_id,
                    session_id=info.session_id,
                    power_w=info.power_w,
                    energy_wh=info.energy_wh,
                    soc=info.soc,
                    seq=self._next_seq(),
                    ts=self._stamp(),
                    epoch=self._epoch,
                )
            )
        self._outbox.add_batch(out)
        return out

    def _reply(
        self, request: CommandRequest, reason: RejectReason | None, info: EvseInfo | None
    ) -> CommandReply:
        return CommandReply(
            station_id=self.station_id,
            id=request.id,
            command=request.command,
            evse_id=request.evse_id,
            accepted=reason is None,
            reason=None if reason is None else str(reason),
            info=info,
            ts=self._stamp(),
        )
