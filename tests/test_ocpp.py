"""OCPP 1.6J charge points against a real ``smartcharge csms --ocpp-port``: the ``ocpp``
library's ChargePoint as the client over real WebSockets, a real Mosquitto, the driver API
over HTTPS (``docs/ocpp.md``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    CancelReservationStatus,
    ChargingProfileStatus,
    RemoteStartStopStatus,
    ReservationStatus,
    TriggerMessageStatus,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from simulator.mqtt_station import password_path
from tests.db import child_env, database_for_test
from tests.driver_client import Api, EventStream, csms_process, wait_until
from tests.support import REPO_ROOT, FleetProcess

pytestmark = [pytest.mark.integration, pytest.mark.needs_db, pytest.mark.timeout(120)]

T = TypeVar("T")
WAIT_S = 20.0
STATIONS = (sys.executable, "-m", "gateway.cli", "stations")
ADMIN = (sys.executable, "-m", "gateway.cli", "admin")
CHARGE_POINTS = ("cp-1", "cp-2", "cp-3", "cp-4", "cp-5", "cp-6", "ocsim-001")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class TestChargePoint(ChargePoint):  # type: ignore[misc]
    """A charge point that answers remote start/stop as told and records what it got."""

    __test__ = False

    def __init__(self, cp_id: str, connection: ClientConnection) -> None:
        super().__init__(cp_id, connection, response_timeout=WAIT_S)
        self.remote_starts: queue.Queue[dict[str, Any]] = queue.Queue()
        self.remote_stops: queue.Queue[int] = queue.Queue()
        self.availability: queue.Queue[tuple[int, str]] = queue.Queue()
        self.triggers: queue.Queue[tuple[str, int | None]] = queue.Queue()
        self.reservations: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cancellations: queue.Queue[int] = queue.Queue()
        self.profiles: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.answer_start = RemoteStartStopStatus.accepted
        self.silent = asyncio.Event()  # set: never answer a remote start

    async def start(self) -> None:
        """Each frame routed in a task: a CALL left unanswered blocks nothing else."""
        tasks: set[asyncio.Task[None]] = set()
        while True:
            task = asyncio.ensure_future(self.route_message(await self._connection.recv()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kw: Any) -> Any:
        self.remote_starts.put({"id_tag": id_tag, **kw})
        if self.silent.is_set():
            await asyncio.Event().wait()  # never answers
        return call_result.RemoteStartTransaction(status=self.answer_start)

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, **kw: Any) -> Any:
        self.reservations.put({"connector_id": connector_id, **kw})
        return call_result.ReserveNow(status=ReservationStatus.accepted)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int) -> Any:
        self.cancellations.put(reservation_id)
        return call_result.CancelReservation(status=CancelReservationStatus.accepted)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: Any) -> Any:
        self.profiles.put((connector_id, cs_charging_profiles))
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, **kw: Any) -> Any:
        self.triggers.put((requested_message, kw.get("connector_id")))
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, **kw: Any) -> Any:
        self.availability.put((connector_id, kw["type"]))
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> Any:
        self.remote_stops.put(transaction_id)
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)


class Station:
    """One simulated charge point on its own event loop thread; the test calls it blocking."""

    def __init__(
        self, port: int, cp_id: str, password: str | None, tls: ssl.SSLContext | None
    ) -> None:
        scheme = "ws" if tls is None else "wss"
        self.url = f"{scheme}://127.0.0.1:{port}/ocpp/{cp_id}"
        self.tls = tls
        self.cp_id, self.password = cp_id, password
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.ws: ClientConnection | None = None
        self.cp: TestChargePoint | None = None
        self.on_close: list[Callable[[], None]] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, subprotocols: tuple[str, ...] = ("ocpp1.6",)) -> ClientConnection:
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.cp_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"

        async def opening() -> ClientConnection:
            return await connect(
                self.url,
                ssl=self.tls,
                subprotocols=list(subprotocols),  # type: ignore[arg-type]
                additional_headers=headers,
            )

        self.ws = self.run(opening())
        return self.ws

    def connect(self) -> TestChargePoint:
        ws = self.open()
        self.cp = TestChargePoint(self.cp_id, ws)
        asyncio.run_coroutine_threadsafe(self._serve(self.cp), self.loop)
        return self.cp

    async def _serve(self, cp: TestChargePoint) -> None:
        with contextlib.suppress(ConnectionClosed):
            await cp.start()

    def call(self, payload: Any) -> Any:
        assert self.cp is not None
        return self.run(self.cp.call(payload))

    def raw(self, frame: str | bytes) -> Any:
        """Send one frame and read the next frame back (no ChargePoint reading)."""
        assert self.ws is not None
        ws = self.ws

        async def exchange() -> Any:
            await ws.send(frame)
            return json.loads(await ws.recv())

        return self.run(exchange())

    def close(self) -> None:
        for done in self.on_close:
            done()
        if self.ws is not None:
            self.run(self.ws.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class Stack:
    def __init__(self, api: Api, ocpp_port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.api, self.ocpp_port, self.proc, self.log = api, ocpp_port, proc, log
        self.passwords: dict[str, str] = {}
        self.operator = ""
        self.data_dir: Path = log.parent
        self.db_url: str | None = None
        self.tls = api.context  # trusts the CSMS's self-signed certificate

    def station(self, cp_id: str, password: str | None = "") -> Station:
        """``password=""``: the charge point's own."""
        own = self.passwords.get(cp_id) if password == "" else password
        return Station(self.ocpp_port, cp_id, own, self.tls)

    def healthy(self) -> bool:
        status, _ = self.api.get("/healthz", secure=False, token="")
        return status == 200


def provision(data_dir: Path, db_url: str | None, station_id: str) -> str:
    out = subprocess.run(
        [*STATIONS, "--data-dir", str(data_dir), "add", station_id, "--ocpp"],
        cwd=REPO_ROOT,
        env=child_env(db_url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"/ocpp/{station_id}" in out, out
    match = re.search(r"password \(shown once\): (\S+)", out)
    assert match, out
    return match.group(1)


def operator_token(api: Api, data_dir: Path, db_url: str | None) -> str:
    email, password = "ocpp-ops@example.com", "x" * 16
    subprocess.run(
        [*ADMIN, "create-operator", email, "--password-stdin", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=child_env(db_url),
        input=password,
        text=True,
        check=True,
        capture_output=True,
    )
    status, body = api.post("/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, body
    token: str = body["access_token"]
    return token


@pytest.fixture(scope="module")
def stack(module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ocpp")
    http_port, https_port, ocpp_port = free_port(), free_port(), free_port()
    data_dir = tmp / "csms"
    with database_for_test(data_dir) as db_url:
        passwords = {cp: provision(data_dir, db_url, cp) for cp in CHARGE_POINTS}
        provision(data_dir, db_url, "cp-gone")
        subprocess.run(
            [*STATIONS, "--data-dir", str(data_dir), "revoke", "cp-gone"],
            cwd=REPO_ROOT,
            env=child_env(db_url),
            check=True,
            capture_output=True,
        )
        ports = (http_port, https_port, ocpp_port)
        with running_stack(module_mosquitto_url, tmp, data_dir, db_url, ports) as result:
            result.passwords = passwords
            yield result


@contextlib.contextmanager
def running_stack(
    mqtt_url: str,
    tmp: Path,
    data_dir: Path,
    db_url: str | None,
    ports: tuple[int, int, int],
    extra: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """``smartcharge csms --ocpp-port P --ocpp-tls`` on ``ports`` (HTTP, HTTPS, OCPP), healthy,
    with an operator's token; the caller provisions the charge points and sets ``passwords``."""
    http_port, https_port, ocpp_port = ports
    log = tmp / "csms.log"
    with csms_process(
        mqtt_url,
        data_dir,
        http_port,
        https_port,
        log,
        extra=("--ocpp-port", str(ocpp_port), "--ocpp-tls", *extra),
        db_url=db_url,
    ) as proc:
        cert = data_dir / "tls" / "cert.pem"
        wait_until(cert.exists, "the self-signed certificate")
        api = Api(http_port, https_port, cert)
        result = Stack(api, ocpp_port, proc, log)
        wait_until(result.healthy, "/healthz")
        result.data_dir, result.db_url = data_dir, db_url
        result.operator = operator_token(api, data_dir, db_url)
        yield result


def _evse(api: Api, evse: str) -> dict[str, Any] | None:
    status, body = api.get(f"/api/v1/evses/{evse}", secure=False, token="")
    return body if status == 200 else None


def _evse_in(api: Api, evse: str, status: str) -> dict[str, Any] | None:
    view = _evse(api, evse)
    return view if view is not None and view["status"] == status else None


def _boot(station: Station, connectors: int = 1) -> None:
    result = station.call(
        call.BootNotification(charge_point_model="Test", charge_point_vendor="smartcharge")
    )
    assert result.status == "Accepted"
    assert result.interval > 0
    assert station.call(call.Heartbeat()).current_time
    for connector in range(connectors + 1):
        station.call(
            call.StatusNotification(
                connector_id=connector, error_code="NoError", status="Available", timestamp=_now()
            )
        )


def _status(station: Station, connector: int, status: str) -> None:
    station.call(
        call.StatusNotification(
            connector_id=connector, error_code="NoError", status=status, timestamp=_now()
        )
    )


def _meter(station: Station, tx: int, energy_wh: float, power_w: float, soc: float) -> None:
    station.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                {
                    "timestamp": _now(),
                    "sampledValue": [
                        {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register"},
                        {
                            "value": str(power_w / 1000),
                            "measurand": "Power.Active.Import",
                            "unit": "kW",
                        },
                        {"value": str(soc), "measurand": "SoC", "unit": "Percent"},
                    ],
                }
            ],
        )
    )


def test_a_driver_charges_at_an_ocpp_charge_point_from_the_http_api(stack: Stack) -> None:
    station = stack.station("cp-1")
    try:
        station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "cp-1.1", "Available"), "cp-1.1 Available")
        api = stack.api
        token = api.register("ocpp-driver@example.com")
        dashboard = EventStream(api, "/api/v1/events", stack.operator)  # the dashboard's stream
        station.on_close.append(dashboard.close)

        # the driver reserves: ReserveNow, answered Accepted
        assert station.cp is not None
        status, body = api.post("/api/v1/evses/cp-1.1/reservation", token=token)
        assert status == 201, body
        reserved = station.cp.reservations.get(timeout=WAIT_S)
        assert reserved["connector_id"] == 1
        assert reserved["expiry_date"].endswith("Z")
        _status(station, 1, "Reserved")
        wait_until(lambda: _evse_in(api, "cp-1.1", "Reserved"), "cp-1.1 Reserved")

        # the driver starts: RemoteStartTransaction with the reservation's idTag
        status, body = api.post("/api/v1/evses/cp-1.1/start", {"target_soc": 80}, token=token)
        assert status == 201, body
        session_id = body["session_id"]
        remote = station.cp.remote_starts.get(timeout=WAIT_S)
        assert remote["connector_id"] == 1
        assert remote["id_tag"] == reserved["id_tag"]
        _status(station, 1, "Available")  # no cable yet (or a TriggerMessage): still waiting
        assert _evse(api, "cp-1.1")["status"] == "Preparing"  # type: ignore[index]
        _status(station, 1, "Preparing")
        started = station.call(
            call.StartTransaction(
                connector_id=1,
                id_tag=remote["id_tag"],
                meter_start=10_000,
                timestamp=_now(),
                reservation_id=reserved["reservation_id"],
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx = started.transaction_id
        _status(station, 1, "Charging")
        _meter(station, tx, 10_400, 7_400, 41)
        _meter(station, tx, 11_000, 7_400, 43)

        def energy_rose() -> dict[str, Any] | None:
            view = _evse_in(api, "cp-1.1", "Charging")
            return view if view and view["session"]["energy_wh"] >= 1_000 else None

        view = wait_until(energy_rose, "the session's energy rising in the API")
        assert view["power_w"] == pytest.approx(7_400)
        live = dashboard.wait_for(
            lambda kind, data: (
                kind == "evse" and data["id"] == "cp-1.1" and data["session_energy_wh"] >= 1_000
            ),
            "the energy rising on the dashboard's stream",
        )
        assert live["status"] == "Charging"

        # the driver stops: RemoteStopTransaction, then the charge point's StopTransaction
        status, body = api.post("/api/v1/evses/cp-1.1/stop", token=token)
        assert status == 200, body
        assert station.cp.remote_stops.get(timeout=WAIT_S) == tx
        stop = call.StopTransaction(
            meter_stop=11_500, timestamp=_now(), transaction_id=tx, reason="Remote"
        )
        assert station.call(stop).id_tag_info["status"] == "Accepted"
        assert station.call(stop).id_tag_info["status"] == "Accepted"  # retransmitted: idempotent
        _status(station, 1, "Finishing")
        _status(station, 1, "Available")

        def closed() -> list[dict[str, Any]]:
            status, body = api.get("/api/v1/me/sessions", token=token)
            assert status == 200, body
            return [s for s in body["sessions"] if s.get("ended_at")]

        sessions = wait_until(closed, "the session in /me/sessions")
        assert len(sessions) == 1
        assert sessions[0]["id"] == session_id
        assert sessions[0]["evse_id"] == "cp-1.1"
        assert sessions[0]["energy_wh"] == pytest.approx(1_500)
        assert sessions[0]["end_reason"] == "Remote"
        wait_until(lambda: _evse_in(api, "cp-1.1", "Available"), "cp-1.1 Available again")
    finally:
        station.close()
    wait_until(lambda: _evse_in(stack.api, "cp-1.1", "Offline"), "cp-1.1 Offline once closed")


def test_wrong_password_unknown_and_revoked_ids_are_refused_at_the_handshake(
    stack: Stack,
) -> None:
    for cp_id, password in (
        ("cp-2", "not-the-password"),
        ("cp-2", None),
        ("cp-nobody", stack.passwords["cp-2"]),
        ("cp-gone", stack.passwords["cp-2"]),
    ):
        station = stack.station(cp_id, password)
        try:
            with pytest.raises(InvalidStatus) as refused:
                station.open()
            assert refused.value.response.status_code == 401
        finally:
            station.close()
    plain = Station(stack.ocpp_port, "cp-2", stack.passwords["cp-2"], tls=None)
    try:
        with pytest.raises((InvalidMessage, ConnectionError)):
            plain.open()  # TLS is required: plain ws:// never reaches the handshake
    finally:
        plain.close()
    assert _evse(stack.api, "cp-nobody.1") is None
    assert stack.proc.poll() is None
    assert stack.healthy()


def test_bad_frames_are_answered_and_the_csms_stays_healthy(stack: Stack) -> None:
    pid = stack.proc.pid
    station = stack.station("cp-2")
    boot = {"chargePointVendor": "v", "chargePointModel": "m"}
    try:
        station.open()
        assert station.raw("this is not json")[:3] == [4, "-1", "FormationViolation"]
        assert station.raw(json.dumps({"not": "a list"}))[:3] == [4, "-1", "ProtocolError"]
        assert station.raw(b"\x00\x01")[:3] == [4, "-1", "FormationViolation"]
        wrong_type = [2, "m1", "BootNotification", {**boot, "chargePointVendor": 7}]
        assert station.raw(json.dumps(wrong_type))[:3] == [4, "m1", "TypeConstraintViolation"]
        extra = [2, "m2", "BootNotification", {**boot, "surprise": True}]
        assert station.raw(json.dumps(extra))[:3] == [4, "m2", "FormationViolation"]
        unknown = [2, "m3", "FlyToTheMoon", {}]
        assert station.raw(json.dumps(unknown))[:3] == [4, "m3", "NotImplemented"]
        unhandled = [2, "m4", "DiagnosticsStatusNotification", {"status": "Idle"}]
        assert station.raw(json.dumps(unhandled))[:3] == [4, "m4", "NotSupported"]
        missing = [2, "m6", "BootNotification", {"chargePointModel": "m"}]
        assert station.raw(json.dumps(missing))[:3] == [4, "m6", "ProtocolError"]
        connector = {"connectorId": 65, "errorCode": "NoError", "status": "Available"}
        too_many = [2, "m7", "StatusNotification", connector]
        assert station.raw(json.dumps(too_many))[:3] == [4, "m7", "PropertyConstraintViolation"]
        start = {"connectorId": 1, "idTag": "x", "meterStart": 10**16, "timestamp": _now()}
        huge = [2, "m8", "StartTransaction", start]
        assert station.raw(json.dumps(huge))[:3] == [4, "m8", "PropertyConstraintViolation"]
        ok = station.raw(json.dumps([2, "m5", "Heartbeat", {}]))
        assert ok[:2] == [3, "m5"]
        assert ok[2]["currentTime"]
        with pytest.raises(ConnectionClosed) as closed:
            station.raw("[" + " " * 70_000 + "]")
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    finally:
        station.close()
    other = stack.station("cp-2")
    try:
        for offered in (("ocpp2.0.1",), ()):  # only 1.6 here
            with pytest.raises(InvalidStatus) as refused:
                other.open(subprotocols=offered)
            assert refused.value.response.status_code == 400
    finally:
        other.close()
    assert stack.proc.pid == pid
    assert stack.proc.poll() is None
    assert stack.healthy()
    again = stack.station("cp-2")
    try:
        again.connect()
        assert again.call(call.Heartbeat()).current_time
    finally:
        again.close()


def test_a_flooding_charge_point_is_disconnected_and_the_csms_stays_healthy(
    stack: Stack,
) -> None:
    pid = stack.proc.pid
    station = stack.station("cp-2")
    try:
        ws = station.open()

        async def flood() -> int | None:
            with contextlib.suppress(ConnectionClosed):
                for n in range(2_000):
                    await ws.send(json.dumps([2, f"f{n}", "Heartbeat", {}]))
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await ws.recv()
            return ws.close_code

        assert station.run(flood(), timeout=60) == 1008
    finally:
        station.close()
    assert stack.proc.pid == pid
    assert stack.healthy()
    again = stack.station("cp-2")
    try:
        again.connect()
        assert again.call(call.Heartbeat()).current_time
    finally:
        again.close()


def _translator_pid(csms_pid: int) -> int | None:
    children = []  # each thread's own children: the translator is started again by a thread
    for task in Path(f"/proc/{csms_pid}/task").iterdir():
        with contextlib.suppress(OSError):
            children += (task / "children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            if b"gateway.ocpp_server" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return None


def test_a_translator_that_dies_is_started_again_and_the_csms_stays_up(stack: Stack) -> None:
    pid = stack.proc.pid
    translator = _translator_pid(pid)
    assert translator is not None
    os.kill(translator, signal.SIGKILL)
    wait_until(lambda: _translator_pid(pid) not in (None, translator), "a new translator process")
    station = stack.station("cp-2")
    try:
        station.connect()  # waits in the socket's backlog until the new translator accepts
        assert station.call(call.Heartbeat()).current_time
    finally:
        station.close()
    assert stack.proc.pid == pid
    assert stack.proc.poll() is None
    assert stack.healthy()


def test_a_second_connection_with_the_same_id_closes_the_older_one(stack: Stack) -> None:
    older = stack.station("cp-3")
    newer = stack.station("cp-3")
    try:
        ws = older.open()
        newer.connect()
        older.run(ws.wait_closed())
        assert ws.close_code == 1000
        _boot(newer)
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Available"), "cp-3.1 Available")
    finally:
        newer.close()
        older.close()


def test_a_charge_point_that_never_answers_times_out_and_nothing_starts_late(
    stack: Stack,
) -> None:
    station = stack.station("cp-2")
    try:
        cp = station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "cp-2.1", "Available"), "cp-2.1 Available")
        token = stack.api.register("patient-driver@example.com")
        station.loop.call_soon_threadsafe(cp.silent.set)
        status, body = stack.api.post("/api/v1/evses/cp-2.1/start", {}, token=token)
        assert status == 504, body
        late = cp.remote_starts.get(timeout=WAIT_S)
        started = station.call(
            call.StartTransaction(
                connector_id=1, id_tag=late["id_tag"], meter_start=0, timestamp=_now()
            )
        )
        assert started.id_tag_info["status"] == "Invalid", "a start after the time-out"
    finally:
        station.close()
    assert stack.healthy()


def test_info_is_a_trigger_message_and_maintenance_a_change_availability(stack: Stack) -> None:
    station = stack.station("cp-3")
    try:
        cp = station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Available"), "cp-3.1 Available")
        status, body = stack.api.get("/api/v1/evses/cp-3.1/info", token=stack.operator)
        assert status == 200, body
        assert cp.triggers.get(timeout=WAIT_S) == ("StatusNotification", 1)
        path = "/api/v1/evses/cp-3.1/maintenance"
        status, body = stack.api.call("PUT", path, {"enabled": True}, token=stack.operator)
        assert status == 200, body
        assert cp.availability.get(timeout=WAIT_S) == (1, "Inoperative")
        view = wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Unavailable"), "Unavailable")
        assert view["maintenance"] is True
        _status(station, 1, "Unavailable")
        status, body = stack.api.call("PUT", path, {"enabled": False}, token=stack.operator)
        assert status == 200, body
        assert cp.availability.get(timeout=WAIT_S) == (1, "Operative")
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Available"), "Available again")
    finally:
        station.close()


def test_a_reservation_cancelled_from_the_api_is_a_cancel_reservation(stack: Stack) -> None:
    station = stack.station("cp-3")
    try:
        cp = station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Available"), "cp-3.1 Available")
        token = stack.api.register("ocpp-canceller@example.com")
        status, body = stack.api.post("/api/v1/evses/cp-3.1/reservation", token=token)
        assert status == 201, body
        reserved = cp.reservations.get(timeout=WAIT_S)
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Reserved"), "cp-3.1 Reserved")
        status, body = stack.api.call("DELETE", "/api/v1/evses/cp-3.1/reservation", token=token)
        assert status in (200, 204), body
        assert cp.cancellations.get(timeout=WAIT_S) == reserved["reservation_id"]
        wait_until(lambda: _evse_in(stack.api, "cp-3.1", "Available"), "cp-3.1 Available again")
    finally:
        station.close()


def test_a_site_limit_becomes_a_set_charging_profile_in_watts(stack: Stack) -> None:
    station = stack.station("cp-4")
    try:
        cp = station.connect()
        _boot(station)
        wait_until(lambda: _evse_in(stack.api, "cp-4.1", "Available"), "cp-4.1 Available")
        site = {"limit_kw": 5, "station_ids": ["cp-4"]}
        status, body = stack.api.call("PUT", "/api/v1/sites/ocpp-site", site, token=stack.operator)
        assert status in (200, 201), body
        token = stack.api.register("ocpp-site-driver@example.com")
        status, body = stack.api.post("/api/v1/evses/cp-4.1/start", {}, token=token)
        assert status == 201, body
        remote = cp.remote_starts.get(timeout=WAIT_S)
        # a charger that upper-cases idTags: OCPP compares them case-insensitively
        tag = remote["id_tag"].upper()
        assert tag != remote["id_tag"]
        started = station.call(
            call.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=_now())
        )
        assert started.id_tag_info["status"] == "Accepted"
        _status(station, 1, "Charging")
        _meter(station, started.transaction_id, 100, 4_000, 30)
        profiles = {}  # keys in snake_case: the library translates them
        while 1 not in profiles:  # the fallback (stack level 0), then the limit (level 1)
            connector, profile = cp.profiles.get(timeout=WAIT_S)
            assert connector == 1
            assert profile["charging_profile_purpose"] == "TxDefaultProfile"
            assert profile["charging_schedule"]["charging_rate_unit"] == "W"
            profiles[profile["stack_level"]] = profile
        limit = profiles[1]
        assert 0 <= limit["charging_schedule"]["charging_schedule_period"][0]["limit"] <= 5_000
        assert limit["valid_to"].endswith("Z")
    finally:
        station.close()


def _closed_sessions(api: Api, token: str) -> list[dict[str, Any]]:
    status, body = api.get("/api/v1/me/sessions", token=token)
    assert status == 200, body
    return [s for s in body["sessions"] if s.get("ended_at")]


def test_a_stop_transaction_sent_after_an_offline_period_closes_the_session_once(
    stack: Stack,
) -> None:
    api = stack.api
    token = api.register("ocpp-offline@example.com")
    first = stack.station("cp-5")
    try:
        cp = first.connect()
        _boot(first)
        wait_until(lambda: _evse_in(api, "cp-5.1", "Available"), "cp-5.1 Available")
        status, body = api.post("/api/v1/evses/cp-5.1/start", {}, token=token)
        assert status == 201, body
        remote = cp.remote_starts.get(timeout=WAIT_S)
        started = first.call(
            call.StartTransaction(
                connector_id=1, id_tag=remote["id_tag"], meter_start=5_000, timestamp=_now()
            )
        )
        tx = started.transaction_id
        _status(first, 1, "Charging")
        _meter(first, tx, 5_300, 7_000, 50)
    finally:
        first.close()
    wait_until(lambda: _evse_in(api, "cp-5.1", "Offline"), "cp-5.1 Offline")

    # back online later: the session ended meanwhile, the charger sends its StopTransaction
    again = stack.station("cp-5")
    try:
        again.connect()
        assert (
            again.call(
                call.BootNotification(charge_point_model="Test", charge_point_vendor="smartcharge")
            ).status
            == "Accepted"
        )
        stop = call.StopTransaction(
            meter_stop=5_900, timestamp=_now(), transaction_id=tx, reason="EVDisconnected"
        )
        for _ in range(2):  # retransmitted: answered both times, applied once
            assert again.call(stop).id_tag_info["status"] == "Accepted"
        _status(again, 1, "Available")
        sessions = wait_until(lambda: _closed_sessions(api, token), "the session closed")
        assert len(sessions) == 1
        assert sessions[0]["id"] == body["session_id"]
        assert sessions[0]["energy_wh"] == pytest.approx(900)
        assert sessions[0]["end_reason"] == "EVDisconnected"
        wait_until(lambda: _evse_in(api, "cp-5.1", "Available"), "cp-5.1 Available again")
    finally:
        again.close()


def test_a_connected_charge_point_revoked_meanwhile_is_disconnected_at_its_heartbeat(
    stack: Stack,
) -> None:
    station = stack.station("cp-6")
    try:
        station.connect()
        boot = call.BootNotification(charge_point_model="Test", charge_point_vendor="smartcharge")
        assert station.call(boot).status == "Accepted"  # no heartbeat yet: none checked so far
        _status(station, 1, "Available")
        wait_until(lambda: _evse_in(stack.api, "cp-6.1", "Available"), "cp-6.1 Available")
        subprocess.run(
            [*STATIONS, "--data-dir", str(stack.data_dir), "revoke", "cp-6"],
            cwd=REPO_ROOT,
            env=child_env(stack.db_url),
            check=True,
            capture_output=True,
        )
        assert station.call(call.Heartbeat()).current_time  # answered, then disconnected
        assert station.ws is not None
        ws = station.ws
        station.run(ws.wait_closed())
        assert ws.close_code == 1008
        wait_until(lambda: _evse_in(stack.api, "cp-6.1", "Offline"), "cp-6.1 Offline")
        with pytest.raises(InvalidStatus):
            stack.station("cp-6").open()
    finally:
        station.close()


def test_a_simulated_ocpp_station_charges_a_driver_like_an_mqtt_one(
    stack: Stack, tmp_path: Path
) -> None:
    """``smartcharge fleet --protocol ocpp1.6``: the simulator's physics over OCPP."""
    fleet_dir = tmp_path / "fleet"
    secret = password_path(fleet_dir, "ocsim-001")
    secret.parent.mkdir(parents=True)
    secret.write_text(stack.passwords["ocsim-001"] + "\n")
    secret.chmod(0o600)
    fleet = FleetProcess("mqtt://127.0.0.1:1", fleet_dir, stations=1, evses=2, prefix="ocsim")
    cert = stack.data_dir / "tls" / "cert.pem"
    fleet.args += ["--protocol", "ocpp1.6", "--ocpp-url", f"wss://127.0.0.1:{stack.ocpp_port}/ocpp"]
    fleet.args += ["--ocpp-ca-file", str(cert)]
    api = stack.api
    with fleet:
        for evse in ("ocsim-001.1", "ocsim-001.2"):
            wait_until(lambda evse=evse: _evse_in(api, evse, "Available"), f"{evse} Available", 60)
        token = api.register("ocpp-sim-driver@example.com")
        status, body = api.post("/api/v1/evses/ocsim-001.1/start", {"target_soc": 100}, token=token)
        assert status == 201, body

        def charging() -> dict[str, Any] | None:
            view = _evse_in(api, "ocsim-001.1", "Charging")
            return view if view and view["session"]["energy_wh"] > 0 else None

        wait_until(charging, "the simulated station charging with energy rising", 60)
        status, body = api.post("/api/v1/evses/ocsim-001.1/stop", token=token)
        assert status == 200, body
        sessions = wait_until(lambda: _closed_sessions(api, token), "the session closed", 60)
        assert sessions[0]["energy_wh"] > 0
        assert sessions[0]["end_reason"] == "Remote"
