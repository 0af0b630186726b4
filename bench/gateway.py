"""``python -m bench gateway``: public reads per second vs a bare Falcon endpoint.

A real ``smartcharge csms`` (gunicorn, production options: 1 uvicorn worker) with a
simulated fleet of 50 stations x 2 EVSEs on a private Mosquitto, and a bare Falcon ASGI app
(:mod:`bench._bare_app`) under gunicorn with uvicorn's own worker (1 worker).
``wrk -t2 -c32`` (a separate process) loads, in turn: the bare endpoint,
``GET /api/v1/stations`` and ``GET /api/v1/evses/{id}``, over plain HTTP (public reads);
rounds alternate so load drift on a shared machine hits all three alike.

The figure is the requests/s of the slower of the two reads; ratio = figure / bare (target
>= 0.5); both reads' ratios are in ``reads``.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from bench._support import (
    REPO_ROOT,
    csms_process,
    fleet_process,
    free_port,
    loadavg,
    mosquitto,
    stop_process,
    wait_for,
    wait_http_ok,
)
from bench.common import BenchmarkError, Options, Result, benchmark

__all__ = ["run", "wrk"]

NAME: Final = "gateway"
TARGET: Final = 0.5
STATIONS: Final = 50
CONNECTIONS: Final = 32
_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_P99 = re.compile(r"^\s+99%\s+([0-9.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, seconds: float) -> dict[str, Any]:
    """``wrk -t2 -c32 --latency``: requests/s, p99 ms, non-2xx count."""
    exe = shutil.which("wrk")
    if exe is None:
        raise BenchmarkError(
            "this benchmark needs wrk: ./scripts/bench gateway installs it (or apt-get install wrk)"
        )
    out = subprocess.run(
        [exe, "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = _RATE.search(out)
    if rate is None:
        raise BenchmarkError(f"unexpected wrk output: {out}")
    p99 = _P99.search(out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(rate.group(1)),
        "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 3) if p99 else None,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "loadavg": loadavg(),
    }


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _evse_count(port: int) -> int:
    try:
        body = _get_json(port, "/api/v1/stations")
    except (OSError, ValueError, http.client.HTTPException):
        return 0
    return sum(len(s["evses"]) for s in body.get("stations", []))


@benchmark(NAME, "public reads/s (stations, one EVSE) under gunicorn vs a bare Falcon endpoint")
def run(options: Options) -> Result:
    seconds = 3.0 if options.quick else 8.0
    rounds = 1 if options.quick else 2
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_name:
        tmp = Path(tmp_name)
        http_port, https_port, bare_port = free_port(), free_port(), free_port()
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-w",
                "1",
                "--log-level",
                "warning",
                "-b",
                f"127.0.0.1:{bare_port}",
                "bench._bare_app:app",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "bare.log").open("wb"),
            start_new_session=True,
        )
        try:
            with (
                mosquitto(tmp / "broker") as broker,
                csms_process(
                    broker.url, tmp / "csms", http_port, https_port, tmp / "csms.log"
                ) as csms,
                fleet_process(
                    broker.url,
                    tmp / "fleet",
                    stations=STATIONS,
                    evses=2,
                    speed=1.0,
                    meter_interval=5.0,
                    prefix="gb",
                    log_path=tmp / "fleet.log",
                ),
            ):
                wait_http_ok(bare_port, "/hello", bare, 60)
                wait_http_ok(http_port, "/healthz", csms, 90)
                wait_for(lambda: _evse_count(http_port) == 2 * STATIONS, "100 EVSEs", 90)
                evse_id = _get_json(http_port, "/api/v1/stations")["stations"][0]["evses"][0]["id"]
                urls = {
                    "bare": f"http://127.0.0.1:{bare_port}/hello",
                    "stations": f"http://127.0.0.1:{http_port}/api/v1/stations",
                    "evse": f"http://127.0.0.1:{http_port}/api/v1/evses/{evse_id}",
                }
                runs: dict[str, list[dict[str, Any]]] = {key: [] for key in urls}
                for _ in range(rounds):
                    for key, url in urls.items():
                        runs[key].append(wrk(url, seconds))
                if csms.poll() is not None:
                    raise BenchmarkError("the CSMS died during the run")
        finally:
            stop_process(bare)

    def mean_rps(key: str) -> float:
        return round(sum(r["rps"] for r in runs[key]) / len(runs[key]), 1)

    base = mean_rps("bare")
    rps = {key: mean_rps(key) for key in ("stations", "evse")}
    reads = {
        key: {"rps": value, "ratio": round(value / base, 3), "runs": runs[key]}
        for key, value in rps.items()
    }
    worst = min(rps, key=lambda key: rps[key])
    figure = rps[worst]
    return {
        "name": NAME,
        "figure": figure,
        "unit": "req/s",
        "better": "higher",
        "baseline": base,
        "ratio": round(figure / base, 3),
        "target": TARGET,
        "target_of": "ratio",
        "met": all(value / base >= TARGET for value in rps.values()),
        "figure_is": worst,
        "reads": reads,
        "baseline_runs": runs["bare"],
        "wrk": f"-t2 -c{CONNECTIONS} -d{seconds:g}s",
        "gunicorn": "1 uvicorn worker (ASGI)",
        "stations": STATIONS,
        "evses": 2 * STATIONS,
        "quick": options.quick,
    }
