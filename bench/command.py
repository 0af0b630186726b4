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

So two last, **paced** levels ask the question of real drivers: 100 of them, each ``start``,
think, ``stop``, think, with a think time of ``think_s`` +-50 % (uniform, seeded with ``--seed``
per driver, first command spread over the first two think times): at a human pace
(``HUMAN_THINK_S`` = 10 s, ~10 commands/s, still faster than any real driver, whose session
lasts minutes to hours) and at ten times that (``STRESS_THINK_S`` = 1 s, ~100 commands/s). The
schedule is an open loop per driver: each command is due a think time after the previous one was
*due*, and is sent then, or at once if the previous answer came late (``late`` counts those sent
over ``LATE_MS`` after their due time); each command is timed from the moment it is sent.
Results: ``paced`` (human pace) and ``paced_stress``, each the start summary with
``stop_p50``/``stop_p99``, ``commands_per_s``, ``target_ms``, and ``met`` when start *and* stop
p99 are under the target; top-level ``paced_p99`` (start, human pace), ``paced_stress_p99``
and ``met_paced``. The headline ``figure`` and ``met`` stay the closed-loop ones.

Every level also reports ``cpu_ms_per_command``: the CPU time its commands cost, by component
(``server``: the node and gateway processes with their children; ``fleet``: the simulated
stations; ``broker``: Mosquitto), read from ``/proc`` before and after the level; the load
processes are not counted. At the human pace that figure also carries what runs whatever the
commands (the meter values of open sessions, timers) spread over few commands, so every level
reports ``cores_busy`` too: CPU seconds per wall second by component over the level. The
configuration's ``cpu_ms_per_command`` is the stress level's, where commands dominate.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

from bench._command_load import HUMAN_THINK_S, PACED_TARGET_MS, STRESS_THINK_S, level, paced
from bench._support import (
    csms_process,
    fleet_process,
    free_port,
    gateway_process,
    mosquitto,
    process_cpu_s,
    seed_accounts,
    session_cpu_s,
    wait_for,
    wait_http_ok,
)
from bench.common import BenchmarkError, Options, Result, benchmark

__all__ = ["run", "seed_drivers"]

NAME: Final = "command"
TARGET_MS: Final = 50.0
LEVELS: Final = (1, 10, 100)
PACED_DRIVERS: Final = 100
STATIONS: Final = 100


def seed_drivers(data_dir: Path, n: int) -> list[str]:
    """``n`` drivers in the CSMS's database; their access tokens (valid 15 min)."""
    return seed_accounts(data_dir, n, "driver")


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


WORKERS: Final = (0, 1, 2, 4)
"""Gateway workers apart from the node; 0: the gateway in the node's own process."""


@contextlib.contextmanager
def _system(
    tmp: Path, broker_url: str, data_dir: Path, workers: int
) -> Iterator[tuple[int, int, subprocess.Popen[bytes], list[int]]]:
    """The CSMS, alone (``workers`` 0) or as a node with ``workers`` gateway workers; yields
    the public HTTP and HTTPS ports, the process to watch and the sessions of the server's
    processes (for their CPU time)."""
    http_port, https_port = free_port(), free_port()
    log = tmp / f"csms-{workers}.log"
    if workers == 0:
        with csms_process(broker_url, data_dir, http_port, https_port, log) as csms:
            wait_http_ok(http_port, "/healthz", csms, 90)
            yield http_port, https_port, csms, [csms.pid]
        return
    node_port = free_port()
    with (
        csms_process(broker_url, data_dir, node_port, 0, log, ("--serve-gateways",)) as node,
        gateway_process(
            broker_url, data_dir, http_port, https_port, tmp / f"gw-{workers}.log", workers
        ) as gateway,
    ):
        wait_http_ok(node_port, "/healthz", node, 90)
        wait_http_ok(http_port, "/healthz", gateway, 90)
        yield http_port, https_port, gateway, [node.pid, gateway.pid]


def _configuration(
    tmp: Path, workers: int, tokens: list[str], options: Options, pool: ProcessPoolExecutor
) -> dict[str, Any]:
    seconds = 2.0 if options.quick else 10.0
    paced_seconds = 6.0 if options.quick else 30.0
    human_seconds = 12.0 if options.quick else 60.0
    evse_count = STATIONS * 2
    data_dir = tmp / "csms"
    with (
        mosquitto(tmp / f"broker-{workers}") as broker,
        _system(tmp, broker.url, data_dir, workers) as (http_port, https_port, server, sids),
        fleet_process(
            broker.url,
            tmp / "fleet",
            stations=STATIONS,
            evses=2,
            speed=600.0,
            meter_interval=3600.0,
            prefix="cb",
            log_path=tmp / f"fleet-{workers}.log",
        ) as fleet,
    ):

        def cpu() -> dict[str, float]:
            return {
                "server": sum(session_cpu_s(sid) for sid in sids),
                "fleet": session_cpu_s(fleet.pid),
                "broker": process_cpu_s(broker.pid or 0),
            }

        wait_for(lambda: len(_evse_ids(http_port)) == evse_count, "200 Available EVSEs", 90)
        evses = _evse_ids(http_port)
        cafile = str(data_dir / "tls" / "cert.pem")
        drivers = [(tokens[d], evses[2 * d : 2 * d + 2]) for d in range(len(tokens))]
        levels: dict[str, dict[str, Any]] = {}
        for n in LEVELS:
            levels[str(n)] = {
                "healthz": level(
                    pool, "healthz", https_port, cafile, drivers[:n], seconds, cpu=cpu
                ),
                "start": level(pool, "start", https_port, cafile, drivers[:n], seconds, cpu=cpu),
            }
        paced_drivers = drivers[:PACED_DRIVERS]
        human = paced(
            pool, https_port, cafile, paced_drivers, human_seconds, options.seed, HUMAN_THINK_S, cpu
        )
        stress = paced(
            pool,
            https_port,
            cafile,
            paced_drivers,
            paced_seconds,
            options.seed,
            STRESS_THINK_S,
            cpu,
        )
        if server.poll() is not None:
            raise BenchmarkError(f"the server died during the run ({workers} workers)")
    top = levels[str(LEVELS[-1])]
    return {
        "workers": workers,
        "p50": top["start"]["p50"],
        "p99": top["start"]["p99"],
        "healthz_p99": top["healthz"]["p99"],
        "paced_p99": human["p99"],
        "paced_stop_p99": human.get("stop_p99"),
        "paced_stress_p99": stress["p99"],
        "paced_stress_stop_p99": stress.get("stop_p99"),
        "cpu_ms_per_command": stress.get("cpu_ms_per_command"),
        "paced_cores_busy": human.get("cores_busy"),
        "levels": levels,
        "paced": human,
        "paced_stress": stress,
        "seconds_per_level": seconds,
        "seconds_paced": human_seconds,
        "seconds_paced_stress": paced_seconds,
    }


@benchmark(
    NAME,
    "HTTPS start -> station -> answer, p50/p99 at 1/10/100 drivers vs GET /healthz, with the"
    " gateway in the node's process and with 1, 2 and 4 gateway workers apart",
)
def run(options: Options) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp_name:
        tmp = Path(tmp_name)
        tokens = seed_drivers(tmp / "csms", max(*LEVELS, PACED_DRIVERS))
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            configurations = {
                str(w): _configuration(tmp, w, tokens, options, pool) for w in WORKERS
            }
    best = min(configurations.values(), key=lambda c: c["p99"])
    best_paced = min(configurations.values(), key=lambda c: c["paced_p99"])
    p99, base = best["p99"], best["healthz_p99"]
    return {
        "name": NAME,
        "figure": p99,
        "unit": "ms",
        "better": "lower",
        "baseline": base,
        "ratio": round(base / p99, 3),
        "target": TARGET_MS,
        "met": p99 < TARGET_MS,
        "best_workers": best["workers"],
        "p50": best["p50"],
        "p99": p99,
        "paced_p99": best_paced["paced_p99"],
        "paced_workers": best_paced["workers"],
        "paced_stress_p99": best_paced["paced_stress_p99"],
        "paced_target": PACED_TARGET_MS,
        "met_paced": best_paced["paced"]["met"],
        "concurrency": LEVELS[-1],
        "by_workers": {
            w: {
                k: c[k]
                for k in (
                    "p50",
                    "p99",
                    "healthz_p99",
                    "paced_p99",
                    "paced_stop_p99",
                    "paced_stress_p99",
                    "paced_stress_stop_p99",
                    "cpu_ms_per_command",
                    "paced_cores_busy",
                )
            }
            for w, c in configurations.items()
        },
        "configurations": configurations,
        "stations": STATIONS,
        "evses": STATIONS * 2,
        "quick": options.quick,
    }
