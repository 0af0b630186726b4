"""A small HTTP(S) client for the driver API, as the phone app would use it (tests only)."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.db import child_env
from tests.support import REPO_ROOT


class Api:
    """JSON over HTTP (reads) or HTTPS (everything else), with a bearer token."""

    def __init__(self, http_port: int, https_port: int, cafile: Path) -> None:
        self.http_port, self.https_port = http_port, https_port
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        secure: bool = True,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn: http.client.HTTPConnection
        if secure:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.context, timeout=30
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        bearer = token if token is not None else self.token
        if bearer:
            sent_headers["Authorization"] = f"Bearer {bearer}"
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        try:
            conn.request(method, path, body=payload, headers=sent_headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data else None
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body, **kw)

    def register(self, email: str, password: str = "correct horse battery") -> str:
        status, body = self.post("/api/v1/auth/register", {"email": email, "password": password})
        assert status == 201, body
        token: str = body["access_token"]
        return token


class EventStream:
    """An SSE subscription read on a background thread into a queue."""

    def __init__(self, api: Api, path: str, token: str) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._conn = http.client.HTTPSConnection(
            "127.0.0.1", api.https_port, context=api.context, timeout=60
        )
        self._conn.request("GET", f"{path}?access_token={token}")
        self._resp = self._conn.getresponse()
        assert self._resp.status == 200, self._resp.read()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind, data = "message", ""
        try:
            for raw in self._resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    self.events.put((kind, json.loads(data)))
                    kind, data = "message", ""
        except (OSError, ValueError, AttributeError):
            pass  # closed by close(): http.client drops its file object

    def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], what: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no live event for {what} within {timeout} s")
            try:
                kind, data = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(kind, data):
                return data

    def close(self) -> None:
        self._conn.close()
        self._thread.join(timeout=5)


@contextmanager
def csms_process(
    mqtt_url: str,
    data_dir: Path,
    http_port: int,
    https_port: int,
    log_path: Path,
    extra: tuple[str, ...] = (),
    db_url: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``smartcharge csms`` (gunicorn, HTTP + HTTPS) in its own process group, on the test's
    database (``db_url``: see tests/db.py; ``None`` is SQLite in ``data_dir``)."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "csms",
                "--mqtt-url",
                mqtt_url,
                "--http-port",
                str(http_port),
                "--https-port",
                str(https_port),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
                *extra,
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(db_url),
        )
    try:
        yield proc
    finally:
        stop_group(proc)


@contextmanager
def gateway_process(
    mqtt_url: str,
    data_dir: Path,
    ports: tuple[int, int],
    log_path: Path,
    db_url: str | None,
    workers: int = 2,
) -> Iterator[subprocess.Popen[bytes]]:
    """``smartcharge gateway --workers N`` (apart from the node: docs/node-protocol.md) in
    its own process group; ``ports``: HTTP and HTTPS."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gateway.cli", "gateway",
                "--mqtt-url", mqtt_url,
                "--workers", str(workers),
                "--http-port", str(ports[0]),
                "--https-port", str(ports[1]),
                "--data-dir", str(data_dir),
                "--log-level", "warning",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(db_url),
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it has not stopped 20 s later."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Retry ``check`` (an HTTP read) until it returns something truthy; no event to wait on."""
    deadline, pause = time.monotonic() + timeout, threading.Event()
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        else:
            if last:
                return last
        pause.wait(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
