"""``python -m bench ocpp``: OCPP 1.6J charge points on one node (``docs/ocpp.md``).

A private Mosquitto, ``smartcharge csms --ocpp-port`` in its own session, and N charge points
(the ``ocpp`` library's ChargePoint over real WebSockets, all on this process's event loop):
each is provisioned, connects with its password, boots and reports its connector, then sends
one MeterValues a second for the measured period, its sends spread over the second.

Figures: the p99 CALL -> CALLRESULT latency of those MeterValues (each becomes an MQTT meter
value published by the translator before the answer goes back), against the p99 of
Heartbeats sent the same way (answered without MQTT: the WebSocket and schema validation
alone, the baseline); the time until every charge point had booted (target 30 s at 1,000);
the translator's CPU per message and its resident memory, and the CSMS's.

``--quick``: 50 charge points for 10 s (full: 1,000 for 30 s). The machine is shared: read
``machine.loadavg`` before trusting a tail.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Final

from bench._support import (
    csms_process,
    free_port,
    loadavg,
    mosquitto,
    process_cpu_s,
    session_cpu_s,
    wait_http_ok,
)
from bench.common import BenchmarkError, Options, Result, benchmark, latency_result, ms, summary_ms

__all__ = ["run"]

NAME: Final = "ocpp"
TARGET_P99_MS: Final = 100.0
CONNECT_TARGET_S: Final = 30.0
CONNECT_AT_ONCE: Final = 50


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _provision(data_dir: Path, n: int) -> dict[str, str]:
    from gateway.stations import StationProvisioner
    from storage import open_storage

    data_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(None, data_dir=data_dir)
    try:
        provisioner = StationProvisioner(storage, None)
        return {f"oc-{i:04d}": provisioner.add(f"oc-{i:04d}").password for i in range(n)}
    finally:
        storage.close()


def _translator_pid(csms_pid: int) -> int | None:
    for task in Path(f"/proc/{csms_pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                if b"gateway.ocpp_server" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
            except OSError:
                continue
    return None


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class _Fleet:
    """N client charge points on one event loop."""

    def __init__(self, port: int, passwords: dict[str, str]) -> None:
        self.port, self.passwords = port, passwords
        self.points: list[Any] = []
        self.meter_ns: list[int] = []
        self.heartbeat_ns: list[int] = []
        self.cpu: dict[str, float] = {}

    async def connect_all(self) -> float:
        start = time.monotonic()
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        await asyncio.gather(*(self._connect(cp, pw, gate) for cp, pw in self.passwords.items()))
        return time.monotonic() - start

    async def _connect(self, cp_id: str, password: str, gate: asyncio.Semaphore) -> None:
        from ocpp.v16 import ChargePoint, call
        from websockets.asyncio.client import connect

        token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
        async with gate:
            ws = await connect(
                f"ws://127.0.0.1:{self.port}/ocpp/{cp_id}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers={"Authorization": f"Basic {token}"},
                open_timeout=CONNECT_TARGET_S,
            )
            point = ChargePoint(cp_id, ws, response_timeout=30)
            point.task = asyncio.ensure_future(point.start())
            boot = call.BootNotification(charge_point_model="Bench", charge_point_vendor="sc")
            if (await point.call(boot)).status != "Accepted":
                raise BenchmarkError(f"{cp_id} was not accepted")
            status = call.StatusNotification(
                connector_id=1, error_code="NoError", status="Available", timestamp=_now()
            )
            await point.call(status)
            self.points.append(point)

    async def load(self, seconds: float) -> None:
        n = len(self.points)
        await asyncio.gather(*(self._run(p, i / n, seconds) for i, p in enumerate(self.points)))

    async def _run(self, point: Any, offset: float, seconds: float) -> None:
        from ocpp.v16 import call

        await asyncio.sleep(offset)
        start = time.monotonic()
        end = start + seconds
        energy = 0
        tick = 0
        while time.monotonic() < end:
            energy += 3
            tick += 1
            if tick % 5 == 0:  # one Heartbeat in five: the baseline
                began = time.perf_counter_ns()
                await point.call(call.Heartbeat())
                self.heartbeat_ns.append(time.perf_counter_ns() - began)
            else:
                sample = [
                    {
                        "timestamp": _now(),
                        "sampledValue": [
                            {"value": str(energy), "measurand": "Energy.Active.Import.Register"},
                            {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
                        ],
                    }
                ]
                began = time.perf_counter_ns()
                await point.call(call.MeterValues(connector_id=1, meter_value=sample))
                self.meter_ns.append(time.perf_counter_ns() - began)
            await asyncio.sleep(max(0.0, start + tick - time.monotonic()))

    async def close(self) -> None:
        for point in self.points:
            point.task.cancel()
            await point._connection.close()


@benchmark(NAME, "OCPP 1.6J charge points: CALL -> CALLRESULT p99, CPU per message, memory")
def run(options: Options) -> Result:
    n, seconds = (50, 10.0) if options.quick else (1_000, 30.0)
    with TemporaryDirectory(prefix="bench-ocpp-") as tmp:
        root = Path(tmp)
        passwords = _provision(root / "csms", n)
        http_port, ocpp_port = free_port(), free_port()
        with (
            mosquitto(root / "broker") as broker,
            csms_process(
                broker.url,
                root / "csms",
                http_port,
                0,
                root / "csms.log",
                extra=("--ocpp-port", str(ocpp_port)),
            ) as proc,
        ):
            wait_http_ok(http_port, "/healthz", proc, timeout=60)
            translator = _translator_pid(proc.pid)
            if translator is None:
                raise BenchmarkError("no OCPP translator process")
            fleet = _Fleet(ocpp_port, passwords)
            connected_s = asyncio.run(_connect_and_load(fleet, seconds, proc.pid, translator))
            cpu = fleet.cpu
            rss = {"translator": _rss_mib(translator), "csms": _rss_mib(proc.pid)}
    messages = len(fleet.meter_ns) + len(fleet.heartbeat_ns)
    if not fleet.meter_ns or not fleet.heartbeat_ns:
        raise BenchmarkError("no calls were measured")
    meter, heartbeat = summary_ms(fleet.meter_ns), summary_ms(fleet.heartbeat_ns)
    return latency_result(
        NAME,
        p50_ms=meter["p50"],
        p99_ms=meter["p99"],
        baseline_ms=heartbeat["p99"],
        target_ms=TARGET_P99_MS,
        details={
            "charge_points": n,
            "seconds": seconds,
            "connected_s": round(connected_s, 2),
            "connected_target_s": CONNECT_TARGET_S,
            "meter_values": meter,
            "heartbeats": heartbeat,
            "messages": messages,
            "translator_cpu_ms_per_message": ms(cpu["translator"] / messages * 1e9),
            "csms_cpu_ms_per_message": ms(cpu["csms"] / messages * 1e9),
            "rss_mib": rss,
            "loadavg_after": loadavg(),
        },
    )


async def _connect_and_load(fleet: _Fleet, seconds: float, csms_pid: int, translator: int) -> float:
    connected_s = await fleet.connect_all()
    before = {"translator": process_cpu_s(translator), "csms": session_cpu_s(csms_pid)}
    await fleet.load(seconds)
    after = {"translator": process_cpu_s(translator), "csms": session_cpu_s(csms_pid)}
    # the session's CPU includes the translator's: the CSMS's own is the difference
    used_t = after["translator"] - before["translator"]
    fleet.cpu = {"translator": used_t, "csms": after["csms"] - before["csms"] - used_t}
    await fleet.close()
    return connected_s
