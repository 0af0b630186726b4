"""The load side of ``python -m bench command``: drivers in load processes, their timings.

Not a benchmark itself (the leading underscore keeps :func:`bench.common.discover` away); the
module docstring of :mod:`bench.command` says what each mode measures.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Final

from bench._support import loadavg
from bench.common import BenchmarkError, ms, percentile

__all__ = ["HUMAN_THINK_S", "PACED_TARGET_MS", "STRESS_THINK_S", "drive", "level", "paced"]

PACED_TARGET_MS: Final = 20.0
"""Issue 12: start p99 under 20 ms at a human pace."""
HUMAN_THINK_S: Final = 10.0
"""Mean think time of a paced driver between two commands (uniform, +-50 %) at a human pace:
a driver who taps Start, then Stop ten seconds later, is already faster than any real one (a
session lasts minutes to hours); 100 such drivers offer ~10 commands/s."""
STRESS_THINK_S: Final = 1.0
"""The same 100 drivers ten times faster than that (~100 commands/s)."""
LATE_MS: Final = 100.0


class _Client:
    def __init__(self, port: int, cafile: str, token: str | None) -> None:
        self.port, self.token = port, token
        self.context = ssl.create_default_context(cafile=cafile)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        # Each driver from an address of its own, as drivers' phones are (the gateway caps
        # the connections of one address).
        source = f"127.0.2.{1 + sum(self.token.encode()) % 250}" if self.token else "127.0.0.1"
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=60, source_address=(source, 0)
        )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, int]:
        """``(status, nanoseconds)``; reconnects once if the server closed the connection."""
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            start = time.perf_counter_ns()
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                return resp.status, time.perf_counter_ns() - start
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _driver(
    mode: str,
    port: int,
    cafile: str,
    token: str,
    evses: list[str],
    start_at: float,
    stop_at: float,
    out: dict[str, list[int]],
) -> None:
    client = _Client(port, cafile, token)
    client.call("GET", "/healthz")  # TLS handshake outside the timing
    while time.time() < start_at:
        time.sleep(0.005)
    turn = 0
    while time.time() < stop_at:
        if mode == "healthz":
            status, elapsed = client.call("GET", "/healthz")
            out["ok" if status == 200 else "errors"].append(elapsed)
            continue
        evse = evses[turn % len(evses)]
        turn += 1
        status, elapsed = client.call("POST", f"/api/v1/evses/{evse}/start", {"target_soc": 100})
        if status == 409:
            out["busy"].append(elapsed)
            time.sleep(0.01)
            continue
        if status != 201:
            out["errors"].append(elapsed)
            time.sleep(0.05)
            continue
        out["ok"].append(elapsed)
        for _ in range(200):  # the read model may not have the session yet: retry
            status, elapsed = client.call("POST", f"/api/v1/evses/{evse}/stop")
            if status == 200:
                out["stop"].append(elapsed)
                break
            time.sleep(0.01)
    client.conn.close()


def _paced_driver(
    port: int,
    cafile: str,
    token: str,
    evses: list[str],
    start_at: float,
    stop_at: float,
    seed: int,
    think_s: float,
    out: dict[str, list[int]],
) -> None:
    """start, think, stop, think, ... on a schedule (see the module docstring)."""
    rng = random.Random(f"{seed}:{evses[0]}")
    client = _Client(port, cafile, token)
    client.call("GET", "/healthz")  # TLS handshake outside the timing

    def think() -> float:
        return think_s * rng.uniform(0.5, 1.5)

    def when_due(due: float) -> None:
        now = time.time()
        if now < due:
            time.sleep(due - now)
        elif (now - due) * 1000 > LATE_MS:
            out["late"].append(int((now - due) * 1e9))

    due = start_at + rng.uniform(0, 2 * think_s)
    turn = 0
    while due < stop_at:
        when_due(due)
        evse = evses[turn % len(evses)]
        turn += 1
        status, elapsed = client.call("POST", f"/api/v1/evses/{evse}/start", {"target_soc": 100})
        if status != 201:  # 409: the EVSE is still being unplugged; try the other one soon
            out["busy" if status == 409 else "errors"].append(elapsed)
            due = max(due, time.time()) + 0.05
            continue
        out["ok"].append(elapsed)
        due += think()
        when_due(due)
        for _ in range(200):  # the read model may not have the session yet: retry
            status, elapsed = client.call("POST", f"/api/v1/evses/{evse}/stop")
            if status == 200:
                out["stop"].append(elapsed)
                break
            time.sleep(0.01)
        due += think()
    client.conn.close()


def drive(
    mode: str,
    port: int,
    cafile: str,
    drivers: list[tuple[str, list[str]]],
    start_at: float,
    stop_at: float,
    seed: int = 0,
    think_s: float = STRESS_THINK_S,
) -> dict[str, list[int]]:
    """One load process: a thread per driver; latencies in ns by outcome.

    ``mode``: ``"healthz"`` or ``"start"`` (closed loop), or ``"paced"`` (``seed`` seeds the
    think times, of mean ``think_s``)."""
    outs: list[dict[str, list[int]]] = [
        {"ok": [], "stop": [], "busy": [], "errors": [], "late": []} for _ in drivers
    ]
    threads = [
        threading.Thread(
            target=_paced_driver,
            args=(port, cafile, token, evses, start_at, stop_at, seed, think_s, out),
        )
        if mode == "paced"
        else threading.Thread(
            target=_driver, args=(mode, port, cafile, token, evses, start_at, stop_at, out)
        )
        for (token, evses), out in zip(drivers, outs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged: dict[str, list[int]] = {"ok": [], "stop": [], "busy": [], "errors": [], "late": []}
    for out in outs:
        for key, values in out.items():
            merged[key].extend(values)
    return merged


def level(
    pool: ProcessPoolExecutor,
    mode: str,
    port: int,
    cafile: str,
    drivers: list[tuple[str, list[str]]],
    seconds: float,
    seed: int = 0,
    think_s: float = STRESS_THINK_S,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One level: its latency summary and, with ``cpu`` (CPU seconds by component, read
    before and after), ``cpu_ms_per_command`` by component (per request for healthz) and
    ``cores_busy`` (CPU seconds per wall second, by component, over the level)."""
    procs = min(4, len(drivers))
    start_at = time.time() + 1.5
    futures = [
        pool.submit(
            drive,
            mode,
            port,
            cafile,
            drivers[p::procs],
            start_at,
            start_at + seconds,
            seed,
            think_s,
        )
        for p in range(procs)
    ]
    cpu_before = cpu() if cpu is not None else {}
    wall_before = time.monotonic()
    merged: dict[str, list[int]] = {"ok": [], "stop": [], "busy": [], "errors": [], "late": []}
    for future in futures:
        for key, values in future.result().items():
            merged[key].extend(values)
    cpu_after = cpu() if cpu is not None else {}
    wall_s = time.monotonic() - wall_before
    ok = merged["ok"]
    if not ok:
        raise BenchmarkError(f"{mode} with {len(drivers)} drivers: no successful request")
    summary: dict[str, Any] = {
        "n": len(ok),
        "per_s": round(len(ok) / seconds, 1),
        "p50": ms(percentile(ok, 50)),
        "p99": ms(percentile(ok, 99)),
        "max": ms(max(ok)),
        "busy": len(merged["busy"]),
        "errors": len(merged["errors"]),
        "loadavg": loadavg(),
    }
    if merged["stop"]:
        summary["stop_p50"] = ms(percentile(merged["stop"], 50))
        summary["stop_p99"] = ms(percentile(merged["stop"], 99))
    if cpu_after:
        done = len(ok) + len(merged["stop"])
        summary["cpu_ms_per_command"] = {
            part: round((cpu_after[part] - cpu_before[part]) * 1000 / done, 3) for part in cpu_after
        }
        # at a slow pace the per-command figure also carries what runs anyway (meter values of
        # the sessions, timers): the cores each part keeps busy over the level says it plainly
        summary["cores_busy"] = {
            part: round((cpu_after[part] - cpu_before[part]) / wall_s, 3) for part in cpu_after
        }
    if mode == "paced":
        summary["stop_n"] = len(merged["stop"])
        summary["commands_per_s"] = round((len(ok) + len(merged["stop"])) / seconds, 1)
        summary["late"] = len(merged["late"])
    return summary


def paced(
    pool: ProcessPoolExecutor,
    port: int,
    cafile: str,
    drivers: list[tuple[str, list[str]]],
    seconds: float,
    seed: int,
    think_s: float,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    summary = level(pool, "paced", port, cafile, drivers, seconds, seed, think_s, cpu)
    worst = max(summary["p99"], summary.get("stop_p99", float("inf")))
    return {
        **summary,
        "drivers": len(drivers),
        "think_s": think_s,
        "seed": seed,
        "target_ms": PACED_TARGET_MS,
        "met": worst < PACED_TARGET_MS,
    }
