"""The charge points of ``python -m bench ocpp``, in worker processes of their own.

Each worker runs its share of the charge points (the ``ocpp`` library's ChargePoint over real
WebSockets) on its own event loop, so the clients' CPU neither starves nor hides in the
server's, and is reported apart. The parent steps every worker through the same phases over a
pipe: ``connect`` (each charge point connects with its password, boots, reports its connector
and starts a transaction, at most ``CONNECT_AT_ONCE`` per worker at a time), then ``load`` (one
MeterValues a second each, one call in five a Heartbeat instead, the sends spread over the
second by the charge point's place in the whole fleet); each phase answers with its figures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["CONNECT_AT_ONCE", "ClientWorkers", "LoadFigures"]

CONNECT_AT_ONCE: Final = 50
RESPONSE_TIMEOUT_S: Final = 30


@dataclass(slots=True)
class LoadFigures:
    meter_ns: list[int] = field(default_factory=list)
    heartbeat_ns: list[int] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Points:
    """One worker's charge points, on its event loop."""

    def __init__(self, port: int, share: list[tuple[str, str, float]]) -> None:
        self.port, self.share = port, share
        self.points: list[tuple[Any, float]] = []
        self.figures = LoadFigures()

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        await asyncio.gather(*(self._connect(cp, pw, off, gate) for cp, pw, off in self.share))

    async def _connect(self, cp_id: str, password: str, offset: float, gate: Any) -> None:
        from ocpp.v16 import ChargePoint, call
        from websockets.asyncio.client import connect

        token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
        async with gate:
            ws = await connect(
                f"ws://127.0.0.1:{self.port}/ocpp/{cp_id}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers={"Authorization": f"Basic {token}"},
                open_timeout=RESPONSE_TIMEOUT_S,
            )
            point = ChargePoint(cp_id, ws, response_timeout=RESPONSE_TIMEOUT_S)
            point.task = asyncio.ensure_future(point.start())
            boot = call.BootNotification(charge_point_model="Bench", charge_point_vendor="sc")
            if (await point.call(boot)).status != "Accepted":
                raise RuntimeError(f"{cp_id} was not accepted")
            status = call.StatusNotification(
                connector_id=1, error_code="NoError", status="Available", timestamp=_now()
            )
            await point.call(status)
            # a local start: the translator answers Invalid (no idTag is registered) but keeps
            # the transaction, so every MeterValues becomes an MQTT meter value the CSMS applies
            start = call.StartTransaction(
                connector_id=1, id_tag="BENCH", meter_start=0, timestamp=_now()
            )
            point.transaction_id = (await point.call(start)).transaction_id
            charging = call.StatusNotification(
                connector_id=1, error_code="NoError", status="Charging", timestamp=_now()
            )
            await point.call(charging)
            self.points.append((point, offset))

    async def load(self, seconds: float) -> None:
        began = time.process_time()
        await asyncio.gather(*(self._run(point, off, seconds) for point, off in self.points))
        self.figures.cpu_s = time.process_time() - began

    async def _run(self, point: Any, offset: float, seconds: float) -> None:
        from ocpp.v16 import call

        await asyncio.sleep(offset)
        start = time.monotonic()
        end = start + seconds
        energy = tick = 0
        while time.monotonic() < end:
            energy += 3
            tick += 1
            if tick % 5 == 0:  # one Heartbeat in five: the baseline
                request: Any = call.Heartbeat()
                into = self.figures.heartbeat_ns
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
                request = call.MeterValues(
                    connector_id=1, meter_value=sample, transaction_id=point.transaction_id
                )
                into = self.figures.meter_ns
            began = time.perf_counter_ns()
            try:
                await point.call(request)
            except TimeoutError:
                self.figures.errors += 1
            else:
                into.append(time.perf_counter_ns() - began)
            await asyncio.sleep(max(0.0, start + tick - time.monotonic()))

    async def close(self) -> None:
        for point, _ in self.points:
            point.task.cancel()
            await point._connection.close()


def _worker(pipe: Connection, port: int, share: list[tuple[str, str, float]]) -> None:
    """A worker process: the same compiled validation as the translator, then the phases."""
    from ocpp import messages

    from gateway import ocpp_validation

    messages.ASYNC_VALIDATION = False
    ocpp_validation.install()
    points = _Points(port, share)
    loop = asyncio.new_event_loop()
    pipe.send("ready")
    try:
        while (order := pipe.recv()) != "close":
            if order == "connect":
                began = time.process_time()
                loop.run_until_complete(points.connect_all())
                pipe.send(("connected", time.process_time() - began))
            else:
                loop.run_until_complete(points.load(float(order[1])))
                pipe.send(("loaded", points.figures))
        loop.run_until_complete(points.close())
    finally:
        loop.close()


class ClientWorkers:
    """``processes`` workers sharing ``passwords`` (charge point id -> password)."""

    def __init__(self, port: int, passwords: dict[str, str], processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        n = len(passwords)
        everyone = [(cp, pw, i / n) for i, (cp, pw) in enumerate(passwords.items())]
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        for k in range(processes):
            ours, theirs = context.Pipe()
            proc = context.Process(
                target=_worker, args=(theirs, port, everyone[k::processes]), daemon=True
            )
            proc.start()
            self._pipes.append(ours)
            self._procs.append(proc)
        self._gather(timeout=60)

    def _gather(self, timeout: float) -> list[Any]:
        answers = []
        for pipe in self._pipes:
            if not pipe.poll(timeout):
                raise TimeoutError("a client worker did not answer")
            answer = pipe.recv()
            answers.append(answer)
        return answers

    def connect(self, timeout: float) -> tuple[float, float]:
        """Every charge point connected and booted: (seconds it took, the clients' CPU)."""
        began = time.monotonic()
        for pipe in self._pipes:
            pipe.send("connect")
        answers = self._gather(timeout)
        return time.monotonic() - began, sum(a[1] for a in answers)

    def load(self, seconds: float) -> LoadFigures:
        for pipe in self._pipes:
            pipe.send(("load", seconds))
        total = LoadFigures()
        for _, figures in self._gather(seconds + 2 * RESPONSE_TIMEOUT_S):
            total.meter_ns += figures.meter_ns
            total.heartbeat_ns += figures.heartbeat_ns
            total.errors += figures.errors
            total.cpu_s += figures.cpu_s
        return total

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send("close")
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
