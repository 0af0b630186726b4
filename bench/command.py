"""``python -m bench command``: HTTPS ``start`` -> station accepts -> answer, p50/p99.

A real ``smartcharge csms`` (gunicorn, production options) and a simulated fleet
(``python -m simulator.fleet``, 100 stations x 2 EVSEs, fast simulated time so a stopped
EVSE is unplugged and Available again within ~0.1 s) on a private Mosquitto. Drivers are
registered first, straight into the CSMS's database with its JWT secret (the HTTP register
endpoint is rate-limited per IP), so every request below is an authenticated call.

At 1, 10 and 100 concurrent drivers (threads spread over up to 4 load processes, each with
a keep-alive HTTPS connection, warmed up before timing), each driver loops over its own two
EVSEs: ``POST /evses/{id}/start`` (timed when 201; a 409 because the EVSE is still being
unplugged is retried on the other one) then ``POST /evses/{id}/stop`` (timed too) to free it.
Baseline: ``GET /healthz`` over the same HTTPS transport at the same concurrency (the
transport floor). The figure is the start p99 at 100 drivers (target < 50 ms).

These levels are a closed loop: a driver sends its next command the moment the last one
returns, so 100 drivers keep 100 commands in flight and the latency is whatever queueing
that costs (Little's law: p50 ~= 100 / throughput). A p99 under 50 ms there would need
some 2,000 commands/s, more than this machine serves even ``/healthz`` over HTTPS.

So a last, **paced** level asks the question of real drivers: 100 of them at a human pace,
each ``start``, think, ``stop``, think, with a think time of ``THINK_S`` +-50 % (uniform,
seeded with ``--seed`` per driver, first command spread over the first two think times).
The schedule is an open loop per driver: each command is due a think time after the
previous one was *due*, and is sent then, or at once if the previous answer came late
(``late`` counts those sent over ``LATE_MS`` after their due time). That offers ~100
commands/s (half starts, half stops), well under capacity, and times each command from
the moment it is sent. Result: ``paced`` (the start summary with ``stop_p50``/``stop_p99``,
``commands_per_s``, ``target_ms``, and ``met`` when start *and* stop p99 are under the
target), and top-level ``paced_p99`` (start) and ``met_paced``. The headline ``figure``
and ``met`` stay the closed-loop ones.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import random
import ssl
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from bench._support import (
    csms_process,
    fleet_process,
    free_port,
    loadavg,
    mosquitto,
    wait_for,
    wait_http_ok,
)
from bench.common import BenchmarkError, Options, Result, benchmark, ms, percentile

__all__ = ["drive", "run", "seed_drivers"]

NAME: Final = "command"
TARGET_MS: Final = 50.0
LEVELS: Final = (1, 10, 100)
PACED_DRIVERS: Final = 100
THINK_S: Final = 1.0
"""Mean think time of a paced driver between two commands (uniform, +-50 %)."""
LATE_MS: Final = 100.0
STATIONS: Final = 100
PASSWORD: Final = "correct horse battery staple"


def seed_drivers(data_dir: Path, n: int) -> list[str]:
    """Create ``n`` drivers in the CSMS's database; their access tokens (valid 15 min)."""
    import argon2

    from gateway.auth import LocalAuthenticator, load_or_create_secret
    from storage import DuplicateError, open_storage

    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_storage(None, data_dir=data_dir)
    try:
        auth = LocalAuthenticator(
            store.users,
            store.refresh_tokens,
            secret=load_or_create_secret(data_dir / "secret.key"),
            duplicate_error=DuplicateError,
            # Seeding only: the server never checks these passwords (the drivers use tokens).
            hasher=argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
        )
        return [auth.register(f"driver{i}@bench.local", PASSWORD).access_token for i in range(n)]
    finally:
        store.close()


class _Client:
    def __init__(self, port: int, cafile: str, token: str | None) -> None:
        self.port, self.token = port, token
        self.context = ssl.create_default_context(cafile=cafile)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=60)

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
    out: dict[str, list[int]],
) -> None:
    """start, think, stop, think, ... on a schedule (see the module docstring)."""
    rng = random.Random(f"{seed}:{evses[0]}")
    client = _Client(port, cafile, token)
    client.call("GET", "/healthz")  # TLS handshake outside the timing

    def think() -> float:
        return THINK_S * rng.uniform(0.5, 1.5)

    def when_due(due: float) -> None:
        now = time.time()
        if now < due:
            time.sleep(due - now)
        elif (now - due) * 1000 > LATE_MS:
            out["late"].append(int((now - due) * 1e9))

    due = start_at + rng.uniform(0, 2 * THINK_S)
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
) -> dict[str, list[int]]:
    """One load process: a thread per driver; latencies in ns by outcome.

    ``mode``: ``"healthz"`` or ``"start"`` (closed loop), or ``"paced"`` (``seed`` seeds the
    think times)."""
    outs: list[dict[str, list[int]]] = [
        {"ok": [], "stop": [], "busy": [], "errors": [], "late": []} for _ in drivers
    ]
    threads = [
        threading.Thread(
            target=_paced_driver,
            args=(port, cafile, token, evses, start_at, stop_at, seed, out),
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


def _level(
    pool: ProcessPoolExecutor,
    mode: str,
    port: int,
    cafile: str,
    drivers: list[tuple[str, list[str]]],
    seconds: float,
    seed: int = 0,
) -> dict[str, Any]:
    procs = min(4, len(drivers))
    start_at = time.time() + 1.5
    futures = [
        pool.submit(
            drive, mode, port, cafile, drivers[p::procs], start_at, start_at + seconds, seed
        )
        for p in range(procs)
    ]
    merged: dict[str, list[int]] = {"ok": [], "stop": [], "busy": [], "errors": [], "late": []}
    for future in futures:
        for key, values in future.result().items():
            merged[key].extend(values)
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
    if mode == "paced":
        summary["stop_n"] = len(merged["stop"])
        summary["commands_per_s"] = round((len(ok) + len(merged["stop"])) / seconds, 1)
        summary["late"] = len(merged["late"])
    return summary


def _paced(
    pool: ProcessPoolExecutor,
    port: int,
    cafile: str,
    drivers: list[tuple[str, list[str]]],
    seconds: float,
    seed: int,
) -> dict[str, Any]:
    summary = _level(pool, "paced", port, cafile, drivers, seconds, seed)
    worst = max(summary["p99"], summary.get("stop_p99", float("inf")))
    return {
        **summary,
        "drivers": len(drivers),
        "think_s": THINK_S,
        "seed": seed,
        "target_ms": TARGET_MS,
        "met": worst < TARGET_MS,
    }


def _evse_ids(http_port: int) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        conn.request("GET", "/api/v1/stations")
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return sorted(
        e["id"] for s in body["stations"] for e in s["evses"] if e["status"] == "Available"
    )


@benchmark(NAME, "HTTPS start -> station -> answer, p50/p99 at 1/10/100 drivers vs GET /healthz")
def run(options: Options) -> Result:
    seconds = 2.0 if options.quick else 10.0
    paced_seconds = 6.0 if options.quick else 30.0
    evse_count = STATIONS * 2
    with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "csms"
        tokens = seed_drivers(data_dir, max(*LEVELS, PACED_DRIVERS))
        http_port, https_port = free_port(), free_port()
        with (
            mosquitto(tmp / "broker") as broker,
            csms_process(broker.url, data_dir, http_port, https_port, tmp / "csms.log") as csms,
            fleet_process(
                broker.url,
                tmp / "fleet",
                stations=STATIONS,
                evses=2,
                speed=600.0,
                meter_interval=3600.0,
                prefix="cb",
                log_path=tmp / "fleet.log",
            ),
            ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            wait_http_ok(http_port, "/healthz", csms, 90)
            wait_for(lambda: len(_evse_ids(http_port)) == evse_count, "200 Available EVSEs", 90)
            evses = _evse_ids(http_port)
            cafile = str(data_dir / "tls" / "cert.pem")
            drivers = [(tokens[d], evses[2 * d : 2 * d + 2]) for d in range(len(tokens))]
            levels: dict[str, dict[str, Any]] = {}
            for level in LEVELS:
                levels[str(level)] = {
                    "healthz": _level(
                        pool, "healthz", https_port, cafile, drivers[:level], seconds
                    ),
                    "start": _level(pool, "start", https_port, cafile, drivers[:level], seconds),
                }
            paced = _paced(
                pool, https_port, cafile, drivers[:PACED_DRIVERS], paced_seconds, options.seed
            )
            if csms.poll() is not None:
                raise BenchmarkError("the CSMS died during the run")
    top = levels[str(LEVELS[-1])]
    p99, base = top["start"]["p99"], top["healthz"]["p99"]
    return {
        "name": NAME,
        "figure": p99,
        "unit": "ms",
        "better": "lower",
        "baseline": base,
        "ratio": round(base / p99, 3),
        "target": TARGET_MS,
        "met": p99 < TARGET_MS,
        "p50": top["start"]["p50"],
        "p99": p99,
        "concurrency": LEVELS[-1],
        "levels": levels,
        "paced": paced,
        "paced_p99": paced["p99"],
        "met_paced": paced["met"],
        "seconds_per_level": seconds,
        "seconds_paced": paced_seconds,
        "stations": STATIONS,
        "evses": evse_count,
        "quick": options.quick,
    }
