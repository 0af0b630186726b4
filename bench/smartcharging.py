"""``python -m bench smartcharging``: reallocation time of one site of 1,000 active EVSEs.

A real :class:`~actors.site.SiteActor` (Pykka, its own thread) owns a site of 1,000 EVSEs
with sessions (900 AC up to 22 kW with a 4.14 kW minimum, 100 DC up to 150 kW with 10 kW),
under an 8 MW limit (minimums 4.7 MW, demand 34.8 MW: the limit binds, nobody is paused).
Events arrive as in a busy depot, one at a time: a session ends and another starts on a
free EVSE (40 %), an EV settles well below its share (30 %), the limit moves by a few
percent (an operator, a schedule step: 10 %), an EVSE's station drops off or comes back
(20 %). Each event is told to the actor,
which recomputes the allocation and sends ``set_limit`` where a limit changed; an ``ask``
behind it returns when that is done.

The figure is the p99 of that round trip (tell + reallocation + sends + ask, target 10 ms).
The baseline is the pure allocator (:func:`actors.allocation.allocate`) on the same 1,000
demands, in the same run: ratio = baseline p99 / figure (how much the actor, the diffing and
the sends cost on top). Also reported: ``set_limit`` commands per reallocation by event kind
(only changed limits are sent), and the CPU time per reallocation (this process, less the
baseline's own).
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from typing import Any, Final

from actors.allocation import Demand, allocate
from actors.clock import ManualClock
from actors.site import EvseSnapshot, SiteActor, SiteBoard, SiteConfig, SiteConfigChanged, SiteEvses
from bench.common import Options, Result, benchmark, latency_result, ms, percentile
from protocol import EvseStatus

__all__ = ["run"]

NAME: Final = "smartcharging"
TARGET_MS: Final = 10.0
ACTIVE: Final = 1_000
SPARE: Final = 100
"""EVSEs without a session, where new sessions start."""
LIMIT_W: Final = 8_000_000.0


class _Counter:
    def __init__(self) -> None:
        self.sent = 0
        self._lock = threading.Lock()

    def __call__(self, evse_id: str, watts: int, expires: int, fallback: int) -> None:
        with self._lock:
            self.sent += 1


def _evse(
    n: int, *, session: bool, power: float | None = None, online: bool = True
) -> EvseSnapshot:
    dc = n % 10 == 0
    top = 150_000.0 if dc else 22_000.0
    return EvseSnapshot(
        evse_id=f"st-{n // 2:04d}.{n % 2 + 1}",
        station_id=f"st-{n // 2:04d}",
        status=EvseStatus.CHARGING if session else EvseStatus.AVAILABLE,
        session_open=session,
        power_w=(top if power is None else power) if session else 0.0,
        min_w=10_000.0 if dc else 4_140.0,
        max_w=top,
        reachable=online,
    )


def _demands(evses: dict[int, EvseSnapshot]) -> list[Demand]:
    return [
        Demand(evse_id=e.evse_id, min_w=e.min_w, max_w=e.max_w)
        for e in evses.values()
        if e.session_open and e.reachable
    ]


@benchmark(NAME, "one site of 1,000 active EVSEs: reallocation p99 ms and set_limit per change")
def run(options: Options) -> Result:
    rng = random.Random(f"{options.seed}-smartcharging")
    events = 400 if options.quick else 3_000
    clock = ManualClock(start_s=1_800_000_000.0)
    sends, board = _Counter(), SiteBoard()
    limit = LIMIT_W
    ref = SiteActor.start(
        SiteConfig(id="depot", name="Depot", limit_w=limit),
        send=sends,
        clock=clock,
        board=board,
        round_s=1e9,
        ttl_s=1e9,
    )
    try:
        evses = {n: _evse(n, session=n < ACTIVE) for n in range(ACTIVE + SPARE)}
        ref.ask(SiteEvses(evses=tuple(evses.values())), timeout=60)
        latencies: list[int] = []
        baseline: list[int] = []
        per_kind: dict[str, list[int]] = defaultdict(list)
        baseline_cpu = 0
        cpu_start = time.process_time_ns()
        for _ in range(events):
            roll = rng.random()
            told: list[Any] = []
            if roll < 0.4:
                kind = "session"
                ended = rng.choice([n for n, e in evses.items() if e.session_open])
                started = rng.choice([n for n, e in evses.items() if not e.session_open])
                evses[ended] = _evse(ended, session=False)
                evses[started] = _evse(started, session=True)
                told.append(SiteEvses(evses=(evses[ended], evses[started])))
            elif roll < 0.7:
                kind = "drift"
                n = rng.choice([n for n, e in evses.items() if e.session_open and e.reachable])
                given = board.get("depot")
                share = given.evse_limits.get(evses[n].evse_id, 0) if given else 0
                evses[n] = _evse(n, session=True, power=max(share * 0.3, 0.0))
                # the actor reads a draw as the EV's own after it has had time to follow
                told += [SiteEvses(evses=(evses[n],))] * 3
            elif roll < 0.8:
                kind = "limit"
                limit = LIMIT_W * rng.uniform(0.9, 1.1)
                config = SiteConfig(id="depot", name="Depot", limit_w=limit)
                told.append(SiteConfigChanged(config=config))
            else:
                kind = "station"
                n = rng.choice([n for n, e in evses.items() if e.session_open])
                evses[n] = _evse(n, session=True, online=not evses[n].reachable)
                told.append(SiteEvses(evses=(evses[n],)))
            before = sends.sent
            start = time.perf_counter_ns()
            for message in told:
                ref.tell(message)
            ref.ask(SiteEvses(evses=()), timeout=10)
            latencies.append(time.perf_counter_ns() - start)
            per_kind[kind].append(sends.sent - before)
            demands = _demands(evses)
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            allocate(limit, demands)
            baseline.append(time.perf_counter_ns() - start)
            baseline_cpu += time.thread_time_ns() - start_cpu
        cpu_ns = time.process_time_ns() - cpu_start - baseline_cpu  # the actor's side only
        state = board.get("depot")
    finally:
        ref.stop()
    p99 = ms(percentile(latencies, 99))
    commands = {
        kind: {
            "events": len(counts),
            "mean": round(sum(counts) / len(counts), 2),
            "p99": percentile(counts, 99),
            "max": max(counts),
        }
        for kind, counts in sorted(per_kind.items())
    }
    everything = [c for counts in per_kind.values() for c in counts]
    return latency_result(
        NAME,
        p50_ms=ms(percentile(latencies, 50)),
        p99_ms=p99,
        baseline_ms=ms(percentile(baseline, 99)),
        target_ms=TARGET_MS,
        details={
            "active_evses": ACTIVE,
            "events": events,
            "max_ms": ms(max(latencies)),
            "baseline_p50": ms(percentile(baseline, 50)),
            "commands_per_reallocation": round(sum(everything) / len(everything), 2),
            "commands_by_event": commands,
            "cpu_ms_per_reallocation": round(cpu_ns / 1e6 / events, 3),
            "allocated_kw": None if state is None else round(state.allocated_w / 1000, 1),
            "limit_kw": round(limit / 1000, 1),
            "quick": options.quick,
            "seed": options.seed,
        },
    )
