"""The charging station's logic: a plain class, no threads, no sockets, no clock of its own.

:class:`StationSimulator` turns inputs (a command, the passing of simulated
time, a (re)connection) into the protocol messages to publish, in order. Its
transport (:mod:`simulator.mqtt_station`) and its persistence
(:mod:`simulator.runner`) are separate so tests drive it directly with a
:class:`~simulator.clock.ManualClock`. It is not thread-safe: whoever shares
it between threads (the paho thread and the fleet ticker) holds a lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from actors.protocol import (
    CommandReply,
    CommandRequest,
    EvseId,
    EvseInfo,
    Message,
    MeterValues,
    ProtocolError,
    RejectReason,
    ReserveArgs,
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
from simulator.persistence import FORMAT, SnapshotError, state_from_json, state_to_json

__all__ = ["SEQ_LEASE", "StationSimulator"]

log = logging.getLogger("simulator.station")

#: ``seq`` values handed out per checkpoint: the file always holds a number above every
#: ``seq`` already published, so a crash between two saves never reuses one.
SEQ_LEASE: Final = 10_000


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class StationSimulator:
    """One charging station with its EVSEs: commands and time in, messages out.

    ``seed`` makes every random draw (cars, unplug delays) replayable; ``snapshot``
    (from :meth:`checkpoint`, via a :class:`~simulator.persistence.StationStore`)
    resumes a previous run: statuses, sessions, energy registers and ``seq``.
    """

    def __init__(
        self,
        descriptor: StationDescriptor,
        *,
        clock: Clock,
        seed: int = 0,
        meter_interval: float = 5.0,
        snapshot: Mapping[str, Any] | None = None,
    ) -> None:
        if not meter_interval > 0:
            raise ValueError(f"meter_interval must be positive, not {meter_interval!r}")
        self._descriptor = descriptor
        self._clock = clock
        self._last_ts = 0
        self._seed = seed
        self._commands_topic = commands_topic(descriptor.id)
        self._specs = {
            e.id: EvseSpec(
                evse_id=e.id,
                max_power_w=e.max_power_w,
                connector=e.connector,
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
        if snapshot is not None:
            self._restore(snapshot)

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
    def needs_save(self) -> bool:
        """A status changed (or the ``seq`` lease ran out) since the last checkpoint."""
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
        """What to publish on every (re)connection: the birth, then every EVSE's status."""
        now = self._clock.now()
        birth: list[Message] = [StationBirth(station=self._descriptor, ts=self._stamp(now))]
        return birth + [self._status(state, now) for state in self._states.values()]

    def offline_message(self, reason: str = "shutdown") -> StationOffline:
        """The retained ``state`` for a clean shutdown (or, with the default of
        :class:`StationOffline`, the last will)."""
        return StationOffline(station_id=self.station_id, ts=_ms(self._clock.now()), reason=reason)

    def last_will(self) -> StationOffline:
        return StationOffline(station_id=self.station_id, ts=_ms(self._clock.now()))

    def handle_payload(self, topic: str, payload: bytes) -> list[Message]:
        """An MQTT message: ours only if it is on our own commands topic; bad ones are dropped."""
        if topic != self._commands_topic:
            log.debug("Ignoring a message on %s: not our commands topic", topic[:200])
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
        now = self._clock.now()
        spec = self._specs.get(request.evse_id)
        if spec is None:
            return [self._reply(request, now, RejectReason.UNKNOWN_EVSE, None)]
        caught_up = self._advance(spec, now)  # e.g. a driver who left a moment ago
        state = self._states[spec.evse_id]
        try:
            args = command_args(request)
        except ProtocolError as exc:
            log.warning("Rejecting %s for Evse %s: %s", request.command, spec.evse_id, exc)
            reply = self._reply(request, now, RejectReason.INVALID_COMMAND, state.info())
            return [*caught_up, reply]
        if isinstance(args, ReserveArgs):
            args = self._on_our_clock(args, request.ts, now)
        outcome = evse.apply(spec, state, args, now)
        self._states[spec.evse_id] = outcome.state
        if outcome.reason is not None:
            log.info("Evse %s rejected %s: %s", spec.evse_id, request.command, outcome.reason)
        reply = self._reply(request, now, outcome.reason, outcome.state.info())
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
            "saved_at": now,
            "evses": {eid: state_to_json(st, now) for eid, st in self._states.items()},
        }

    def _restore(self, snapshot: Mapping[str, Any]) -> None:
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

    # ------------------------------------------------------------------ messages

    def _advance(self, spec: EvseSpec, now: float) -> list[Message]:
        outcome = evse.advance(spec, self._states[spec.evse_id], now)
        self._states[spec.evse_id] = outcome.state
        return self._messages(outcome.events)

    def _on_our_clock(self, args: ReserveArgs, sent_ms: int, now: float) -> ReserveArgs:
        """``expires_at`` is on the CSMS's clock: keep the same real duration on ours.

        With ``--speed`` the simulated clock runs ahead of the CSMS's, so the
        reservation's length (from the request's ``ts``) is scaled, not its end time.
        """
        if args.expires_at is None or sent_ms <= 0:
            return args
        speed = float(getattr(self._clock, "speed", 1.0))
        length_ms = max(0, args.expires_at - sent_ms) * speed
        return replace(args, expires_at=int(now * 1000 + length_ms))

    def _stamp(self, at: float) -> int:
        """Epoch ms, never earlier than anything this station already sent (protocol rule)."""
        self._last_ts = max(self._last_ts, _ms(at))
        return self._last_ts

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _status(self, state: EvseState, at: float) -> StatusReport:
        self._status_dirty = True
        return StatusReport(
            station_id=self.station_id, info=state.info(), seq=self._next_seq(), ts=self._stamp(at)
        )

    def _messages(self, events: Iterable[EvseEvent]) -> list[Message]:
        out: list[Message] = []
        for event in events:
            if event.kind is EventKind.STATUS:
                out.append(self._status(event.state, event.at))
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
                    ts=self._stamp(event.at),
                )
            )
        return out

    def _reply(
        self,
        request: CommandRequest,
        now: float,
        reason: RejectReason | None,
        info: EvseInfo | None,
    ) -> CommandReply:
        return CommandReply(
            station_id=self.station_id,
            id=request.id,
            command=request.command,
            evse_id=request.evse_id,
            accepted=reason is None,
            reason=None if reason is None else str(reason),
            info=info,
            ts=self._stamp(now),
        )
