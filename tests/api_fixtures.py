"""An in-process CSMS with storage, auth and the Falcon app, over a real broker and a
simulated fleet in its own process. Requests go through ``falcon.testing`` as HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2
import falcon.testing
import pykka
import pytest

from actors.clock import ManualClock
from actors.live import LiveEvent, LiveHub, LiveStream
from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from gateway.node_client import NodeClient, RemoteCsms
from protocol.mqtt_settings import parse_mqtt_url
from storage import DuplicateError, Storage
from tests.db import database_for_test, open_test_storage
from tests.driver_client import wait_until
from tests.support import FleetProcess, FleetWatcher

HTTPS_BASE = "https://127.0.0.1:8443"
PASSWORD = "correct horse battery"
STATIONS, EVSES = 2, 2
EVSE_IDS = [f"ap-{s:03d}.{e}" for s in range(1, STATIONS + 1) for e in range(1, EVSES + 1)]


@dataclass
class Running:
    system: CsmsSystem
    storage: Storage
    auth: LocalAuthenticator
    client: falcon.testing.TestClient
    watcher: FleetWatcher
    clock: ManualClock | None = None
    """With ``@pytest.mark.manual_clock``: the CSMS's clock, moved only by the test."""
    streams: list[LiveStream] = field(default_factory=list)
    node: NodeClient | None = None
    """With ``@pytest.mark.remote_gateway``: the app runs on this replica of the node, and
    reaches the actors only through the broker (``docs/node-protocol.md``)."""

    @property
    def hub(self) -> LiveHub:
        """The hub the app's streams read: the node's own, or the remote gateway's."""
        return self.system.hub if self.node is None else self.node.hub

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        https: bool = True,
        **kw: Any,
    ) -> falcon.testing.Result:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conductor = falcon.testing.ASGIConductor(self.client.app)
        # A loop of its own per call: tests call from several threads at once, and the
        # TestClient's module-wide runner serves one thread at a time.
        return asyncio.run(
            conductor.simulate_request(
                method,
                path,
                json=body,
                headers=headers,
                protocol="https" if https else "http",
                **kw,
            )
        )

    def driver(self, email: str) -> tuple[str, str]:
        """Register a driver; returns (access token, user id)."""
        result = self.call(
            "POST", "/api/v1/auth/register", body={"email": email, "password": PASSWORD}
        )
        assert result.status_code == 201, result.json
        token = result.json["access_token"]
        return token, self.auth.verify(token).user_id

    def operator(self, email: str = "ops@example.com") -> str:
        self.auth.create_user(email, PASSWORD, "operator")
        result = self.call(
            "POST", "/api/v1/auth/login", body={"email": email, "password": PASSWORD}
        )
        assert result.status_code == 200, result.json
        token: str = result.json["access_token"]
        return token

    def live(self, user_id: str) -> LiveStream:
        """What ``/me/events`` would stream to this user."""
        stream = self.hub.subscribe(lambda e: e.user_id == user_id)
        self.streams.append(stream)
        return stream


def next_event(stream: LiveStream, kind: str, timeout: float = 20.0) -> LiveEvent:
    """The next live event of ``kind`` (others are skipped), waiting on the stream's queue."""
    import time

    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        event = stream.get(timeout=remaining)
        if event is not None and event.kind == kind:
            return event
    raise AssertionError(f"no {kind!r} live event within {timeout} s")


@pytest.fixture
def running(
    request: pytest.FixtureRequest, mosquitto_url: str, tmp_path: Path
) -> Iterator[Running]:
    marker = request.node.get_closest_marker("reservation_s")
    reservation_s = marker.args[0] if marker else 900.0
    clock = ManualClock() if request.node.get_closest_marker("manual_clock") else None
    remote = request.node.get_closest_marker("remote_gateway") is not None or bool(
        os.environ.get("SMARTCHARGE_TEST_REMOTE_GATEWAY")
    )
    database = contextlib.ExitStack()  # SQLite in tmp_path, or a fresh PostgreSQL database
    storage = open_test_storage(
        tmp_path / "csms", database.enter_context(database_for_test(tmp_path / "csms"))
    )
    watcher = FleetWatcher()
    system = CsmsSystem(
        CsmsConfig(
            mqtt_url=mosquitto_url,
            storage=storage,
            listeners=(watcher,),
            reservation_s=reservation_s,
            command_timeout_s=5,
            serve_gateways=remote,
        ),
        clock=clock,
    )
    auth = LocalAuthenticator(
        storage.users,
        storage.refresh_tokens,
        secret=b"s" * 32,
        duplicate_error=DuplicateError,
        hasher=argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
    )
    node = NodeClient(parse_mqtt_url(mosquitto_url)) if remote else None
    app = create_app(
        system if node is None else RemoteCsms(node),
        auth=auth,
        storage=storage,
        https_base=HTTPS_BASE,
        login_limits=(1000, 1000),
        signup_limits=(1000, 60.0),
        asgi=True,  # what the gunicorn workers serve (falcon.testing drives it the same way)
    )
    system.start()
    if node is not None:
        node.start()
    fleet = FleetProcess(
        mosquitto_url, tmp_path / "fleet", stations=STATIONS, evses=EVSES, speed=60, prefix="ap"
    ).start()
    try:
        watcher.wait_for(
            lambda: all(watcher.status_is(e, "Available")() for e in EVSE_IDS),
            "the fleet Available",
            30,
        )
        if node is not None:
            wait_until(  # the replica changes on the gateway's own thread: polled
                lambda: (
                    node.node_online.is_set()
                    and all(
                        (v := node.view.evse(e)) is not None and v.state.status == "Available"
                        for e in EVSE_IDS
                    )
                ),
                "the gateway's replica Available",
                30,
            )
        yield Running(
            system=system,
            storage=storage,
            auth=auth,
            client=falcon.testing.TestClient(app),
            watcher=watcher,
            clock=clock,
            node=node,
        )
    finally:
        if node is not None:
            node.stop()
        fleet.terminate()
        system.stop()
        pykka.ActorRegistry.stop_all()
        storage.close()
        database.close()
