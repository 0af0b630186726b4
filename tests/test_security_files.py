"""Files and the real server (gunicorn): the data dir is 0700 and the database, TLS key, JWT
secret and demo logins 0600, new or left looser by an older version (tightened, with a
warning); chunked request bodies are read, and bounded like any other (413); the running
instance's /openapi.json names the ports it actually serves."""

from __future__ import annotations

import http.client
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.auth import LocalAuthenticator
from gateway.server import ensure_demo_users
from gateway.tls import ensure_self_signed_cert
from storage import DB_FILENAME, Storage, open_storage
from tests.account_support import PASSWORD, RealCsms, real_csms
from tests.auth_support import cheap_hasher

pytestmark = pytest.mark.timeout(120)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which lets others read what is created with the default modes."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture(scope="module")
def csms(module_mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCsms]:
    previous = os.umask(0o022)
    try:
        with real_csms(module_mosquitto_url, tmp_path_factory.mktemp("real")) as running:
            yield running
    finally:
        os.umask(previous)


# -- files -----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_running_csms_keeps_its_data_dir_and_secrets_private(csms: RealCsms) -> None:
    assert mode(csms.data_dir) == 0o700
    assert mode(csms.data_dir / "tls") == 0o700
    for secret in ("tls/key.pem", "secret.key", "demo-logins.json"):
        assert mode(csms.data_dir / secret) == 0o600, secret
    if csms.db_url is None:  # SQLite: the file holds the password hashes
        assert mode(csms.data_dir / DB_FILENAME) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_a_new_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "csms"
    with open_storage(None, data_dir=data_dir) as storage:
        storage.users.create("ada@example.com", "hash", "driver")
        assert mode(data_dir) == 0o700
        db = data_dir / DB_FILENAME
        assert mode(db) == 0o600
        wal = db.with_name(DB_FILENAME + "-wal")
        assert wal.exists()
        assert mode(wal) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_loose_modes_left_by_an_older_version_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "csms"
    cert, key = ensure_self_signed_cert(data_dir)
    with open_storage(None, data_dir=data_dir) as storage:
        ensure_demo_users(local_auth(storage), storage, data_dir)
    logins = data_dir / "demo-logins.json"
    for path, loose in ((data_dir, 0o755), (key.parent, 0o755), (key, 0o644), (logins, 0o644)):
        path.chmod(loose)
    (data_dir / DB_FILENAME).chmod(0o644)
    caplog.set_level(logging.WARNING)

    ensure_self_signed_cert(data_dir)
    with open_storage(None, data_dir=data_dir) as storage:
        ensure_demo_users(local_auth(storage), storage, data_dir)

    assert mode(data_dir) == 0o700
    assert mode(key.parent) == 0o700
    assert mode(key) == mode(logins) == mode(data_dir / DB_FILENAME) == 0o600
    assert mode(cert) == 0o644  # a certificate is public
    assert "key.pem had mode 644" in caplog.text


def local_auth(storage: Storage) -> LocalAuthenticator:
    return LocalAuthenticator(
        storage.users, storage.refresh_tokens, secret=b"s" * 32, hasher=cheap_hasher()
    )


# -- the real server -------------------------------------------------------------------------


def chunked_post(csms: RealCsms, path: str, chunks: list[bytes]) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", csms.api.https_port, context=csms.api.context, timeout=30
    )
    try:
        conn.request(
            "POST",
            path,
            body=iter(chunks),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_chunked_login_is_read_like_any_other(csms: RealCsms) -> None:
    body = json.dumps(csms.logins["driver"]).encode()
    status, answer = chunked_post(csms, "/api/v1/auth/login", [body[:7], body[7:20], body[20:]])
    assert status == 200, answer
    assert answer["token_type"] == "Bearer"


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_chunked_body_over_the_limit_is_refused_with_413(csms: RealCsms) -> None:
    padding = b" " * 4096
    chunks = [b'{"email": "x@example.com", "password": "' + PASSWORD.encode() + b'"', *(
        [padding] * 8), b"}"]  # fmt: skip
    status, answer = chunked_post(csms, "/api/v1/auth/login", chunks)
    assert status == 413, answer


@pytest.mark.integration
@pytest.mark.needs_db
def test_a_running_csms_documents_the_ports_it_serves(csms: RealCsms) -> None:
    status, document = csms.api.get("/openapi.json", secure=False)
    assert status == 200
    urls = [server["url"] for server in document["servers"]]
    assert urls == [
        f"http://127.0.0.1:{csms.api.http_port}",
        f"https://127.0.0.1:{csms.api.https_port}",
    ]
    status, _page = csms.api.call("GET", "/api/v1/stations")
    assert status == 200


@pytest.mark.integration
@pytest.mark.needs_db
def test_the_real_https_port_sends_hsts(csms: RealCsms) -> None:
    conn = http.client.HTTPSConnection(
        "127.0.0.1", csms.api.https_port, context=csms.api.context, timeout=30
    )
    try:
        conn.request("GET", "/dashboard")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 200
    assert response.getheader("Strict-Transport-Security", "").startswith("max-age=")
    assert "frame-ancestors 'none'" in response.getheader("Content-Security-Policy", "")
