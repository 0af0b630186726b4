"""``python -m bench fleet``: EVSE actors per node: RSS, start-up time, idle CPU.

Each measurement runs in a fresh subprocess (``python -m bench.fleet KIND N``) so RSS is
the process's own (``VmRSS`` of ``/proc/self/status``):

- ``evse``: a :class:`actors.supervisor.SupervisorActor` (no bridge, no subscribers) is fed
  ``StationBirth`` messages for N/2 stations x 2 EVSEs, so it starts N
  :class:`actors.evse.EvseActor` s (one Pykka actor, one thread, each); started = the time
  until a query queued behind the births is answered and the last EVSE actor answers
  ``GetState``;
- ``bare``: N bare :class:`pykka.ThreadingActor` s (daemon threads), started one by one: the
  floor of one thread per actor.

``--quick`` measures the same sizes with a shorter idle window.

Idle CPU: ``os.times`` (user + system) over a few idle seconds after start-up, as % of a core.
The figure is the RSS at 10,000 EVSEs (target < 1 GiB, and started in < 15 s); ratio = bare
pykka RSS / figure (above 1: an EVSE actor costs less than a bare Pykka actor).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Final

from bench._support import REPO_ROOT, loadavg
from bench.common import BenchmarkError, Options, Result, benchmark

__all__ = ["measure", "run"]

NAME: Final = "fleet"
SIZES: Final = (1_000, 10_000)
RSS_TARGET_MIB: Final = 1024.0
START_TARGET_S: Final = 15.0


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchmarkError("no VmRSS in /proc/self/status")


def _threads() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def measure(kind: str, n: int, idle_s: float) -> dict[str, Any]:
    """Run in the child: start ``n`` actors of ``kind``, return the figures."""
    import pykka

    from actors.messages import GetEvseRef, GetState, Inbound
    from actors.supervisor import SupervisorActor
    from protocol import (
        EvseDescriptor,
        EvseId,
        StationBirth,
        StationDescriptor,
        StationId,
        evse_key,
    )

    class Bare(pykka.ThreadingActor):
        use_daemon_thread = True

        def on_receive(self, message: Any) -> Any:
            return message

    births = []
    for s in range(n // 2):
        sid = StationId(f"st{s:06d}")
        evses = tuple(EvseDescriptor(id=EvseId(str(j))) for j in (1, 2))
        station = StationDescriptor(id=sid, name=sid, lat=45.0, lon=9.0, evses=evses)
        births.append(StationBirth(station=station, ts=1))
    rss0 = _rss_mib()
    cpu0 = _cpu_s()
    start = time.perf_counter()
    if kind == "evse":
        sup = SupervisorActor.start(bridge=None)
        for birth in births:
            sup.tell(Inbound(message=birth))
        last_key = evse_key(f"st{n // 2 - 1:06d}", "2")
        last: Any = sup.ask(GetEvseRef(evse_id=last_key), timeout=600)
        last.ask(GetState(), timeout=60)
    else:
        refs = [Bare.start() for _ in range(n)]
        refs[-1].ask("ping", timeout=60)
    started_s = time.perf_counter() - start
    start_cpu = _cpu_s() - cpu0
    rss_started = _rss_mib()
    time.sleep(0.5)
    cpu1 = _cpu_s()
    idle0 = time.perf_counter()
    time.sleep(idle_s)
    idle_cpu_pct = 100 * (_cpu_s() - cpu1) / (time.perf_counter() - idle0)
    threads = _threads()
    rss = _rss_mib()
    pykka.ActorRegistry.stop_all()  # EVSE actors run on non-daemon threads
    return {
        "kind": kind,
        "actors": n,
        "started_s": round(started_s, 3),
        "start_cpu_s": round(start_cpu, 3),
        "rss_mib": round(rss, 1),
        "rss_started_mib": round(rss_started, 1),
        "rss_before_mib": round(rss0, 1),
        "kib_per_actor": round((rss_started - rss0) * 1024 / n, 1),
        "idle_cpu_pct": round(idle_cpu_pct, 2),
        "threads": threads,
    }


def _child(kind: str, n: int, idle_s: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fleet", kind, str(n), str(idle_s)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchmarkError(f"fleet child {kind} {n} failed ({proc.returncode}): {proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["loadavg"] = loadavg()
    return result


@benchmark(NAME, "EVSE actors per node at 1k/10k EVSEs vs bare pykka actors: RSS, start, idle CPU")
def run(options: Options) -> Result:
    idle_s = 1.0 if options.quick else 3.0
    ns = SIZES
    sizes: dict[str, dict[str, Any]] = {}
    for n in ns:
        sizes[str(n)] = {"evse": _child("evse", n, idle_s), "bare": _child("bare", n, idle_s)}
    big = sizes[str(ns[-1])]
    rss, bare_rss = big["evse"]["rss_mib"], big["bare"]["rss_mib"]
    started = big["evse"]["started_s"]
    return {
        "name": NAME,
        "figure": rss,
        "unit": f"MiB RSS at {ns[-1]:,} EVSEs",
        "better": "lower",
        "baseline": bare_rss,
        "ratio": round(bare_rss / rss, 3),
        "target": RSS_TARGET_MIB,
        "met": rss < RSS_TARGET_MIB and started < START_TARGET_S,
        "evses": ns[-1],
        "started_s": started,
        "started_baseline_s": big["bare"]["started_s"],
        "started_ratio": round(big["bare"]["started_s"] / started, 3),
        "started_target_s": START_TARGET_S,
        "idle_cpu_pct": big["evse"]["idle_cpu_pct"],
        "idle_cpu_baseline_pct": big["bare"]["idle_cpu_pct"],
        "sizes": sizes,
        "quick": options.quick,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))), flush=True)
    os._exit(0)  # 10,000 actor threads: do not wait for them
