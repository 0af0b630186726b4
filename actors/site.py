"""Smart charging: one :class:`SiteActor` per site owns the sharing of its power limit.

A site groups stations behind one grid connection (:class:`SiteConfig`: a limit in W,
optionally a schedule of limits by time of day, per-EVSE minimum and maximum). Its actor
hears every EVSE of its stations (:class:`SiteEvses`, batched per burst by the
:class:`~actors.site_router.SiteRouter`), and recomputes the allocation
(:func:`actors.allocation.allocate`, pure) when

- a session starts, ends, is suspended or resumed, or an EVSE goes offline or comes back;
- the limit or the schedule step changes (:class:`SiteConfigChanged`, a timer at each step);
- an EV draws clearly less than its allocation (its spare goes to the others);
- a round ends (every ``round_s``: the paused EVSEs have waited one more round, so they go
  first; see the allocation rule).

It sends ``set_limit`` only where an EVSE's limit went down, or up by more than
``SEND_TOLERANCE_W``, or to renew one before it expires (``ttl_s``): a station that loses
the CSMS falls back, at ``expires_at``, to ``fallback_w`` = the site's limit divided by its
EVSEs, so the site stays within its limit without us. Sessions on an offline station keep
what they were last given (it is subtracted from the limit) until they come back.

What the actor decided is readable from any thread in :class:`SiteBoard` (the API, the
metrics, the dashboard): limit, allocated, measured, each EVSE's limit, commands sent.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pykka

from actors.allocation import HEADROOM_W, Demand, allocate
from actors.clock import Clock, TimerHandle
from actors.scheduling import run_as_normal_thread
from actors.site_model import (
    EvseSnapshot,
    ScheduleStep,
    SiteBoard,
    SiteConfig,
    SiteConfigChanged,
    SiteDepartures,
    SiteEvses,
    SiteState,
    limit_at,
    state_json,
)

__all__ = [
    "EvseSnapshot",
    "ScheduleStep",
    "SiteActor",
    "SiteBoard",
    "SiteConfig",
    "SiteConfigChanged",
    "SiteDepartures",
    "SiteEvses",
    "SiteState",
    "limit_at",
    "state_json",
]

log = logging.getLogger(__name__)

SEND_TOLERANCE_W: Final = 200.0
DRIFT_W: Final = HEADROOM_W
"""An EV drawing this much (or 20 %) below its allocation gives the rest away."""
HISTORY_STEP_S: Final = 10.0
HISTORY_LEN: Final = 90
"""15 minutes of the site's power, for the dashboard's chart."""
SETTLE_UPDATES: Final = 2
"""Meter updates to wait after a new limit before reading the EV's draw as its demand."""


@dataclass(frozen=True, slots=True)
class _Timer:
    kind: str  # "round", "step", "renew"


SendLimit = Callable[[str, int, int, int], None]
"""``send(evse_id, limit_w, expires_at_ms, fallback_w)``: tell the EVSE's actor to send
``set_limit`` (never blocks)."""


@dataclass(slots=True)
class _Sent:
    limit_w: int
    at_ms: int
    updates_since: int = 0


class SiteActor(pykka.ThreadingActor):
    """One site's allocation (see the module docstring)."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        send: SendLimit,
        clock: Clock,
        board: SiteBoard | None = None,
        round_s: float = 300.0,
        ttl_s: float = 300.0,
        record: Callable[[SiteState], None] | None = None,
        record_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.config = config
        self._send = send
        self._clock = clock
        self.board = board if board is not None else SiteBoard()
        self._round_s = round_s
        self._ttl_s = ttl_s
        self.evses: dict[str, EvseSnapshot] = {}
        self.waited: dict[str, int] = {}
        self.sent: dict[str, _Sent] = {}
        self.allocation: dict[str, int] = {}
        self.commands_sent = 0
        self.reallocations = 0
        self._timers: dict[str, TimerHandle] = {}
        self._record = record
        self._record_s = record_s
        self._unrecorded: SiteState | None = None
        self._history: collections.deque[tuple[int, float, float, float]] = collections.deque(
            maxlen=HISTORY_LEN
        )
        self._limit = config.limit_w
        self.departures: Mapping[str, int] = {}
        self._first_seen: dict[str, tuple[float, float]] = {}
        """Session id -> (SoC, energy) when first seen: the battery's size, estimated."""

    def __repr__(self) -> str:
        return f"SiteActor({self.config.id})"

    # -- pykka

    def on_start(self) -> None:
        run_as_normal_thread()  # started by the sites listener host (actors.scheduling)
        self._arm("round", self._round_s)
        self._arm("renew", self._ttl_s / 4)
        self._arm_step()
        self._reallocate()

    def on_stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._write_record()
        self.board.drop(self.config.id)

    def on_receive(self, message: Any) -> Any:
        match message:
            case SiteEvses(evses=evses):
                if self._take(evses):
                    self._reallocate()
                elif evses:
                    self._publish(self._limit)  # what they draw changed
            case SiteDepartures(departures=departures):
                if departures != self.departures:
                    self.departures = dict(departures)
                    self._reallocate()
            case SiteConfigChanged(config=config):
                self.config = config
                self._arm_step()
                self._reallocate()
            case _Timer(kind="round"):
                self._end_round()
                self._arm("round", self._round_s)
            case _Timer(kind="step"):
                self._arm_step()
                self._reallocate()
            case _Timer(kind="renew"):
                self._renew()
                self._arm("renew", self._ttl_s / 4)
            case _Timer(kind="record"):
                self._timers.pop("record", None)
                self._write_record()
        return None

    # -- what changed

    def _take(self, evses: tuple[EvseSnapshot, ...]) -> bool:
        """Keep the latest of each EVSE; ``True`` when the allocation must be redone."""
        redo = False
        for new in evses:
            old = self.evses.get(new.evse_id)
            self.evses[new.evse_id] = new
            if new.session_id is not None and new.soc is not None:
                self._first_seen.setdefault(new.session_id, (new.soc, new.session_energy_wh))
            if old is not None and old.session_id not in (None, new.session_id):
                self._first_seen.pop(old.session_id, None)
            sent = self.sent.get(new.evse_id)
            if sent is not None:
                sent.updates_since += 1
            if (
                old is None
                or (old.session_open, old.status, old.reachable)
                != (
                    new.session_open,
                    new.status,
                    new.reachable,
                )
                or self._drifted(new)
            ):
                redo = True
        return redo

    def _drifted(self, evse: EvseSnapshot) -> bool:
        """The EV draws clearly less than it was given (and has had time to follow)."""
        given = self.allocation.get(evse.evse_id, 0)
        sent = self.sent.get(evse.evse_id)
        if given <= 0 or sent is None or sent.updates_since < SETTLE_UPDATES:
            return False
        return evse.power_w < given - max(DRIFT_W, 0.2 * given)

    # -- deciding

    def _bounds(self, evse: EvseSnapshot) -> tuple[float, float]:
        low, high = self.config.evse_limits.get(evse.evse_id, (evse.min_w, evse.max_w))
        return max(low, 0.0), max(high, 0.0)

    def _demand(self, evse: EvseSnapshot) -> Demand:
        low, high = self._bounds(evse)
        sent = self.sent.get(evse.evse_id)
        measured: float | None = None
        if (
            sent is not None
            and sent.limit_w > 0
            and sent.updates_since >= SETTLE_UPDATES
            and evse.power_w < sent.limit_w - max(DRIFT_W, 0.2 * sent.limit_w)
        ):
            measured = evse.power_w  # the EV, not the site, limits it
        return Demand(
            evse_id=evse.evse_id,
            min_w=low,
            max_w=high,
            measured_w=measured,
            waited=self.waited.get(evse.evse_id, 0),
            need_w=self._need_w(evse),
        )

    def _need_w(self, evse: EvseSnapshot) -> float | None:
        """The power still needed to reach the target SoC by the departure: the energy (from
        the battery's size, estimated from the SoC gained per Wh so far) over the hours left
        (at least 5 minutes); ``None`` without a departure or before an estimate."""
        sid = evse.session_id
        if sid is None or sid not in self.departures or evse.soc is None:
            return None
        first = self._first_seen.get(sid)
        if first is None:
            return None
        gained = evse.soc - first[0]
        if gained < 1.0:
            return None
        capacity_wh = (evse.session_energy_wh - first[1]) / (gained / 100)
        missing = max((evse.target_soc or 100.0) - evse.soc, 0.0) / 100 * capacity_wh
        hours = max(self.departures[sid] - self._clock.time_ms(), 300_000) / 3_600_000
        return missing / hours

    def _reallocate(self) -> None:
        now_s = self._clock.time_s()
        limit, _ = limit_at(self.config, now_s)
        active = [e for e in self.evses.values() if e.session_open and e.reachable]
        # what sessions on unreachable stations were last given stays theirs
        held = sum(
            self.allocation.get(e.evse_id, 0)
            for e in self.evses.values()
            if e.session_open and not e.reachable
        )
        decided = allocate(max(limit - held, 0.0), [self._demand(e) for e in active])
        for evse in self.evses.values():
            if not evse.reachable and evse.evse_id in self.allocation and evse.session_open:
                decided[evse.evse_id] = self.allocation[evse.evse_id]
        self.allocation = decided
        self.reallocations += 1
        self._send_changed(limit, now_s)
        self._publish(limit)

    def _fallback_w(self, limit: float) -> int:
        return int(limit // max(len(self.evses), 1))

    def _send_changed(self, limit: float, now_s: float, *, renew: bool = False) -> None:
        now_ms = int(now_s * 1000)
        expires = now_ms + int(self._ttl_s * 1000)
        fallback = self._fallback_w(limit)
        for evse_id, watts in self.allocation.items():
            evse = self.evses.get(evse_id)
            if evse is None or not evse.reachable:
                continue
            sent = self.sent.get(evse_id)
            due = (
                sent is None
                or watts < sent.limit_w  # lower at once: the site's sum never overshoots
                or watts - sent.limit_w > SEND_TOLERANCE_W
                or (renew and now_ms - sent.at_ms >= self._ttl_s * 500)
            )
            if not due:
                continue
            self.sent[evse_id] = _Sent(limit_w=watts, at_ms=now_ms)
            self.commands_sent += 1
            try:
                self._send(evse_id, watts, expires, min(fallback, watts) if watts else fallback)
            except Exception:  # an EVSE restarting: the next allocation or renewal retries
                log.warning("site %s: set_limit for %s not sent", self.config.id, evse_id)
                self.sent.pop(evse_id, None)

    def _end_round(self) -> None:
        """Paused EVSEs have waited one round more; charging ones start again at 0."""
        for evse_id, watts in self.allocation.items():
            evse = self.evses.get(evse_id)
            if evse is None or not evse.session_open:
                self.waited.pop(evse_id, None)
            elif watts > 0:
                self.waited[evse_id] = 0
            else:
                self.waited[evse_id] = self.waited.get(evse_id, 0) + 1
        self._reallocate()

    def _renew(self) -> None:
        limit, _ = limit_at(self.config, self._clock.time_s())
        self._send_changed(limit, self._clock.time_s(), renew=True)

    def _publish(self, limit: float) -> None:
        self._limit = limit
        now_ms = self._clock.time_ms()
        allocated = float(sum(self.allocation.values()))
        measured = sum(e.power_w for e in self.evses.values() if e.session_open)
        if not self._history or now_ms - self._history[-1][0] >= HISTORY_STEP_S * 1000:
            self._history.append((now_ms, limit, allocated, measured))
        state = SiteState(
            id=self.config.id,
            name=self.config.name,
            limit_w=limit,
            allocated_w=allocated,
            measured_w=measured,
            evse_limits=dict(self.allocation),
            paused=tuple(sorted(k for k, w in self.allocation.items() if w == 0)),
            active=sum(1 for e in self.evses.values() if e.session_open),
            commands_sent=self.commands_sent,
            reallocations=self.reallocations,
            updated_ms=now_ms,
            history=tuple(self._history),
        )
        self.board.put(state)
        if self._record is not None:
            self._unrecorded = state
            if "record" not in self._timers:  # at most one write per record_s
                self._arm("record", self._record_s)

    def _write_record(self) -> None:
        state, self._unrecorded = self._unrecorded, None
        if state is None or self._record is None:
            return
        try:
            self._record(state)
        except Exception:  # storage away for a moment: the next change writes again
            log.warning("site %s: state not recorded", self.config.id, exc_info=True)

    # -- timers

    def _arm(self, kind: str, delay_s: float) -> None:
        old = self._timers.pop(kind, None)
        if old is not None:
            old.cancel()
        me = self.actor_ref
        self._timers[kind] = self._clock.call_later(delay_s, lambda: _tell(me, _Timer(kind)))

    def _arm_step(self) -> None:
        _, next_s = limit_at(self.config, self._clock.time_s())
        old = self._timers.pop("step", None)
        if old is not None:
            old.cancel()
        if next_s is not None:
            self._arm("step", max(next_s - self._clock.time_s(), 0.0) + 0.001)


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
