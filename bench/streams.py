"""``python -m bench streams``: one gateway worker holding 10,000 open event streams.

A private Mosquitto, the CSMS node (``smartcharge csms --serve-gateways``) with one simulated
station of two EVSEs, and **one** gateway worker apart from it (``smartcharge gateway
--workers 1``, the ASGI worker). Operators are seeded straight into the database (8 streams
each: the per-account cap), and this process opens ``STREAMS`` ``GET /api/v1/events`` over
HTTPS (asyncio, spread over 200 loopback source addresses: the gateway allows 256 connections
per address).

- ``/healthz`` over plain HTTP, 200 requests one after the other from another address:
  p99 before any stream is open (the baseline) and with every stream open (target < 50 ms).
- An EVSE change (an operator starts a session): the time from the start's answer until each
  stream has the EVSE's ``evse`` event; p50, p99, max and how many got it (target: all within
  2 s).
- The worker's RSS before and after the streams are open, per stream; its CPU time to open
  them and to deliver the change.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import resource
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import gateway.asgi_worker  # noqa: F401 - the same TLS read buffer for this client's streams
from bench._support import (
    csms_process,
    fleet_process,
    free_port,
    gateway_process,
    loadavg,
    mosquitto,
    seed_accounts,
    wait_for,
    wait_http_ok,
)
from bench.common import BenchmarkError, Options, Result, benchmark, ms, percentile

__all__ = ["run"]

NAME: Final = "streams"
STREAMS: Final = 10_000
QUICK_STREAMS: Final = 1_000
PER_ACCOUNT: Final = 8
ADDRESSES: Final = 200
HEALTHZ_TARGET_MS: Final = 50.0
DELIVERY_TARGET_S: Final = 2.0
PROBE: Final = "127.0.0.2"


def _healthz_p99(port: int, n: int = 200) -> float:
    times = []
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(PROBE, 0))
        start = time.perf_counter_ns()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        times.append(time.perf_counter_ns() - start)
        conn.close()
    return ms(percentile(times, 99))


def _worker(master: int) -> int:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False
    )
    pids = [int(p) for p in out.stdout.split()]
    if len(pids) != 1:
        raise BenchmarkError(f"expected one gateway worker, found {pids}")
    return pids[0]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for {pid}")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Stream:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.got_at: float | None = None


async def _open(
    stream: _Stream, port: int, context: ssl.SSLContext, token: str, source: str
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, local_addr=(source, 0), server_hostname="127.0.0.1"
    )
    writer.write(
        f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    status = await reader.readline()
    if b" 200 " not in status:
        raise BenchmarkError(f"a stream was refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # the headers
    stream.reader, stream.writer = reader, writer


async def _watch(stream: _Stream, evse_id: str, armed: asyncio.Event) -> None:
    assert stream.reader is not None
    needle = f'"id":"{evse_id}"'.encode()
    while True:
        line = await stream.reader.readline()
        if not line:
            return
        if armed.is_set() and line.startswith(b"data:") and needle in line:
            stream.got_at = time.perf_counter()
            return


def _start(https_port: int, cafile: str, token: str, evse_id: str) -> None:
    context = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection("127.0.0.1", https_port, context=context, timeout=30)
    conn.request(
        "POST",
        f"/api/v1/evses/{evse_id}/start",
        body=json.dumps({"target_soc": 90}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 201:
        raise BenchmarkError(f"the start was refused: {response.status} {body!r}")


async def _measure(
    n: int, tokens: list[str], http_port: int, https_port: int, cafile: str, worker: int
) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=cafile)
    streams = [_Stream() for _ in range(n)]
    gate = asyncio.Semaphore(200)
    rss0, cpu0 = _rss_kib(worker), _cpu_s(worker)

    async def open_one(i: int) -> None:
        async with gate:
            source = f"127.0.1.{1 + i % ADDRESSES}"
            await _open(streams[i], https_port, context, tokens[i // PER_ACCOUNT], source)

    began = time.perf_counter()
    await asyncio.gather(*(open_one(i) for i in range(n)))
    open_s = time.perf_counter() - began
    rss1, cpu1 = _rss_kib(worker), _cpu_s(worker)
    loop = asyncio.get_running_loop()
    healthz = await loop.run_in_executor(None, _healthz_p99, http_port)

    evse_id = "bs-001.1"
    armed = asyncio.Event()
    watchers = [asyncio.create_task(_watch(s, evse_id, armed)) for s in streams]
    armed.set()
    cpu2 = _cpu_s(worker)
    sent = time.perf_counter()
    await loop.run_in_executor(None, _start, https_port, cafile, tokens[0], evse_id)
    answered = time.perf_counter() - sent
    await asyncio.wait(watchers, timeout=30)
    cpu3 = _cpu_s(worker)
    for task in watchers:
        task.cancel()
    for stream in streams:
        if stream.writer is not None:
            stream.writer.close()
    delays = [s.got_at - sent for s in streams if s.got_at is not None]
    return {
        "streams": n,
        "open_s": round(open_s, 2),
        "open_cpu_s": round(cpu1 - cpu0, 2),
        "rss_before_mib": round(rss0 / 1024, 1),
        "rss_after_mib": round(rss1 / 1024, 1),
        "rss_per_stream_kib": round((rss1 - rss0) / n, 2),
        "healthz_p99_ms": healthz,
        "delivered": len(delays),
        "start_answered_s": round(answered, 3),
        "delivery_p50_s": round(percentile(delays, 50), 3) if delays else None,
        "delivery_p99_s": round(percentile(delays, 99), 3) if delays else None,
        "delivery_max_s": round(max(delays), 3) if delays else None,
        "delivery_cpu_s": round(cpu3 - cpu2, 2),
    }


@benchmark(
    NAME, "one gateway worker: /healthz p99 and an EVSE change's delivery with 10,000 streams"
)
def run(options: Options) -> Result:
    n = QUICK_STREAMS if options.quick else STREAMS
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < n + 1_000:
        raise BenchmarkError(f"{n} streams need {n + 1000} file descriptors; the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the gateway too
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "csms"
        tokens = seed_accounts(data_dir, math.ceil(n / PER_ACCOUNT), "operator")
        node_port, http_port, https_port = free_port(), free_port(), free_port()
        with (
            mosquitto(tmp / "broker") as broker,
            csms_process(
                broker.url, data_dir, node_port, 0, tmp / "node.log", ("--serve-gateways",)
            ) as node,
            gateway_process(
                broker.url, data_dir, http_port, https_port, tmp / "gateway.log", 1
            ) as gateway,
            fleet_process(
                broker.url,
                tmp / "fleet",
                stations=1,
                evses=2,
                speed=1.0,
                meter_interval=3600.0,
                prefix="bs",
                log_path=tmp / "fleet.log",
            ),
        ):
            wait_http_ok(node_port, "/healthz", node, 90)
            wait_http_ok(http_port, "/healthz", gateway, 90)
            wait_for(lambda: _available(http_port) == 2, "2 Available EVSEs", 90)
            worker = _worker(gateway.pid)
            baseline = _healthz_p99(http_port)
            figures = asyncio.run(
                _measure(
                    n, tokens, http_port, https_port, str(data_dir / "tls" / "cert.pem"), worker
                )
            )
    healthz = figures["healthz_p99_ms"]
    delivered_all = figures["delivered"] == n
    return {
        "name": NAME,
        "figure": healthz,
        "unit": "ms",
        "better": "lower",
        "baseline": baseline,
        "ratio": round(baseline / healthz, 3) if healthz else None,
        "target": HEALTHZ_TARGET_MS,
        "met": healthz < HEALTHZ_TARGET_MS,
        "delivery_target_s": DELIVERY_TARGET_S,
        "met_delivery": delivered_all
        and figures["delivery_max_s"] is not None
        and figures["delivery_max_s"] < DELIVERY_TARGET_S,
        **figures,
        "loadavg": loadavg(),
        "quick": options.quick,
    }


def _available(http_port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        conn.request("GET", "/api/v1/stations")
        body = json.loads(conn.getresponse().read())
    except (OSError, ValueError):
        return 0
    finally:
        conn.close()
    return sum(e["status"] == "Available" for s in body["stations"] for e in s["evses"])
