"""``python -m bench ocpp``: OCPP 1.6J charge points on one node (``docs/ocpp.md``).

A private Mosquitto, ``smartcharge csms --ocpp-port`` in its own session, and N charge points
(the ``ocpp`` library's ChargePoint over real WebSockets) in worker processes of their own
(``bench._ocpp_clients``): each is provisioned, connects with its password, boots, reports its
connector and starts a transaction, then sends one MeterValues a second for the measured
period, the fleet's sends spread over the second.

Figures: the p99 CALL -> CALLRESULT latency of those MeterValues (each becomes an MQTT meter
value published by the translator, as the charge point's station, before the answer goes back;
the CSMS applies it to the session), against the p99 of Heartbeats sent the same way (one call
in five; answered without MQTT: the WebSocket and schema validation alone, the baseline); the
time until every charge point had connected and started (target 30 s at 1,000); the CPU per
message of the translator, of the CSMS (its session less the translator) and of the clients;
the translator's threads and the resident memory of both; how busy the machine's CPUs were
during the load (everyone's work, the kernel's included).

``--quick``: 50 charge points for 10 s, one client process (full: 1,000 for 30 s, two). The
machine is shared: read ``loadavg_before``/``loadavg_after`` before trusting a tail.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final

from bench._ocpp_clients import ClientWorkers
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

__all__ = ["measure", "run"]

NAME: Final = "ocpp"
TARGET_P99_MS: Final = 100.0
CONNECT_TARGET_S: Final = 30.0


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


def _machine_ticks() -> tuple[int, int]:
    """All CPUs' (busy, total) ticks from ``/proc/stat``: everyone's work, the kernel's too."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPUs busy between two :func:`_machine_ticks`."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 2) if total else 0.0


def _status(pid: int, key: str) -> float:
    """``VmRSS`` in MiB, or ``Threads``, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            value = int(line.split()[1])
            return round(value / 1024, 1) if key.startswith("Vm") else value
    return 0.0


@benchmark(NAME, "OCPP 1.6J charge points: CALL -> CALLRESULT p99, CPU per message, memory")
def run(options: Options) -> Result:
    if options.quick:
        return measure(50, 10.0, client_processes=1)
    return measure(1_000, 30.0, client_processes=2)


def measure(n: int, seconds: float, *, client_processes: int) -> Result:
    """``n`` charge points, ``seconds`` of load, the clients in ``client_processes`` workers."""
    load_before = loadavg()
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
            clients = ClientWorkers(ocpp_port, passwords, client_processes)
            try:
                connected_s, connect_cpu = clients.connect(timeout=max(60.0, 2 * CONNECT_TARGET_S))
                before = {"translator": process_cpu_s(translator), "csms": session_cpu_s(proc.pid)}
                machine_before = _machine_ticks()
                figures = clients.load(seconds)
                after = {"translator": process_cpu_s(translator), "csms": session_cpu_s(proc.pid)}
                busy = _busy(machine_before, _machine_ticks())
                rss = {
                    "translator": _status(translator, "VmRSS"),
                    "csms": _status(proc.pid, "VmRSS"),
                }
                threads = int(_status(translator, "Threads"))
            finally:
                clients.close()
    messages = len(figures.meter_ns) + len(figures.heartbeat_ns)
    if not figures.meter_ns or not figures.heartbeat_ns:
        raise BenchmarkError("no calls were measured")
    # the session's CPU includes the translator's: the CSMS's own is the difference
    used_t = after["translator"] - before["translator"]
    used_csms = after["csms"] - before["csms"] - used_t
    meter, heartbeat = summary_ms(figures.meter_ns), summary_ms(figures.heartbeat_ns)
    return latency_result(
        NAME,
        p50_ms=meter["p50"],
        p99_ms=meter["p99"],
        baseline_ms=heartbeat["p99"],
        target_ms=TARGET_P99_MS,
        details={
            "charge_points": n,
            "seconds": seconds,
            "client_processes": client_processes,
            "connected_s": round(connected_s, 2),
            "connected_target_s": CONNECT_TARGET_S,
            "meter_values": meter,
            "heartbeats": heartbeat,
            "messages": messages,
            "messages_per_s": round(messages / seconds, 1),
            "timeouts": figures.errors,
            "translator_cpu_ms_per_message": ms(used_t / messages * 1e9),
            "csms_cpu_ms_per_message": ms(used_csms / messages * 1e9),
            "clients_cpu_ms_per_message": ms(figures.cpu_s / messages * 1e9),
            "clients_cpu_s_to_connect": round(connect_cpu, 2),
            "rss_mib": rss,
            "translator_threads": threads,
            "machine_busy_during_load": busy,
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
    )
