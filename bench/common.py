"""Shared helpers of the benchmarks: registry, timing, percentiles, result records.

A benchmark is a function ``(options) -> Result`` registered under a name::

    @benchmark("nearest", "nearest-EVSE query latency over 1k/10k/100k EVSEs")
    def run(options: Options) -> Result:
        ...
        return latency_result("nearest", figure_ns=..., baseline_ns=..., target_ms=2.0, ...)

Every result has at least the keys of :data:`REQUIRED_KEYS`; latency figures add ``p50`` and
``p99``. ``ratio`` is always "how many times better than the baseline" (> 1 is better), and
``met`` says whether ``figure`` reaches ``target`` in the direction given by ``better``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import os
import pkgutil
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "DEFAULT_SEED",
    "REGISTRY",
    "REQUIRED_KEYS",
    "RESULTS_DIR",
    "Benchmark",
    "BenchmarkError",
    "Options",
    "Result",
    "benchmark",
    "command_line",
    "discover",
    "latency_result",
    "machine",
    "ms",
    "percentile",
    "summary_ms",
    "time_call_ns",
    "timed",
    "timed_cpu",
    "write_result",
]

T = TypeVar("T")
Result = dict[str, Any]
DEFAULT_SEED: Final = 20240501
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
REQUIRED_KEYS: Final = frozenset(
    {"name", "figure", "unit", "baseline", "ratio", "target", "met", "machine", "date", "command"}
)


class BenchmarkError(RuntimeError):
    """A benchmark found something wrong (e.g. the optimised path disagrees with the baseline)."""


@dataclass(frozen=True, slots=True)
class Options:
    quick: bool = False
    seed: int = DEFAULT_SEED


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    description: str
    run: Callable[[Options], Result]


REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str, description: str
) -> Callable[[Callable[[Options], Result]], Callable[[Options], Result]]:
    """Register the decorated function as benchmark ``name``."""

    def register(run: Callable[[Options], Result]) -> Callable[[Options], Result]:
        if name in REGISTRY and REGISTRY[name].run is not run:
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY[name] = Benchmark(name=name, description=description, run=run)
        return run

    return register


def discover() -> dict[str, Benchmark]:
    """Import every module of the ``bench`` package, so each registers its benchmarks."""
    package = sys.modules[__package__ or "bench"]
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_") and module.name != "common":
            importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(REGISTRY.items()))


# ---------------------------------------------------------------------- measuring


def time_call_ns(call: Callable[[], object], repeat: int = 1) -> int:
    """Nanoseconds one ``call()`` takes (the best of ``repeat``), by ``time.perf_counter_ns``."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter_ns()
        call()
        best = min(best, time.perf_counter_ns() - start)
    return int(best)


def timed(call: Callable[[], T]) -> tuple[int, T]:
    """``(nanoseconds, result)`` of one ``call()``, by ``time.perf_counter_ns``."""
    start = time.perf_counter_ns()
    result = call()
    return time.perf_counter_ns() - start, result


def timed_cpu(call: Callable[[], T]) -> tuple[int, int, T]:
    """``(wall ns, this thread's CPU ns, result)`` of one ``call()``.

    The CPU time excludes the time the thread waited for a core: on a loaded machine the wall
    clock's tail is mostly other processes, the CPU time's is the code's own.
    """
    start_cpu = time.thread_time_ns()
    start = time.perf_counter_ns()
    result = call()
    wall = time.perf_counter_ns() - start
    return wall, time.thread_time_ns() - start_cpu, result


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(ns: float) -> float:
    """Nanoseconds to milliseconds, rounded to the microsecond's thousandth."""
    return round(ns / 1e6, 6)


def summary_ms(samples_ns: Sequence[int]) -> dict[str, float | int]:
    """``{"n", "mean", "p50", "p90", "p99", "max"}`` of nanosecond samples, in ms."""
    return {
        "n": len(samples_ns),
        "mean": ms(sum(samples_ns) / len(samples_ns)),
        "p50": ms(percentile(samples_ns, 50)),
        "p90": ms(percentile(samples_ns, 90)),
        "p99": ms(percentile(samples_ns, 99)),
        "max": ms(max(samples_ns)),
    }


# ---------------------------------------------------------------------- recording


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def command_line(argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", "bench", *args])


def latency_result(
    name: str,
    *,
    p50_ms: float,
    p99_ms: float,
    baseline_ms: float,
    target_ms: float,
    details: dict[str, Any] | None = None,
) -> Result:
    """A latency result whose figure is ``p99_ms`` (lower is better) and baseline is a p99 too."""
    return {
        "name": name,
        "figure": p99_ms,
        "unit": "ms",
        "better": "lower",
        "baseline": baseline_ms,
        "ratio": round(baseline_ms / p99_ms, 2) if p99_ms > 0 else None,
        "target": target_ms,
        "met": _met(p99_ms, target_ms, "lower"),
        "p50": p50_ms,
        "p99": p99_ms,
        **(details or {}),
    }


def _met(figure: float, target: float, better: Literal["lower", "higher"]) -> bool:
    return figure <= target if better == "lower" else figure >= target


def write_result(result: Result, out_dir: Path = RESULTS_DIR, command: str | None = None) -> Path:
    """Stamp ``machine``/``date``/``command``, print it as one JSON line, write ``NAME.json``."""
    result = {
        **result,
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command or command_line(),
    }
    missing = REQUIRED_KEYS - result.keys()
    if missing:
        raise BenchmarkError(f"result of {result.get('name')!r} lacks {sorted(missing)}")
    line = json.dumps(result, sort_keys=False, allow_nan=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['name']}.json"
    path.write_text(line + "\n", encoding="utf-8")
    print(line, flush=True)
    return path
