"""``/api/v1/station-credentials``: operators provision, list and revoke stations; the password
is in the 201 only; the broker's password file follows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
import falcon.testing
import pytest

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app
from gateway.auth import LocalAuthenticator
from gateway.broker_accounts import verify_password
from storage import DuplicateError, Storage, open_storage

pytestmark = pytest.mark.needs_db

API = "/api/v1/station-credentials"
PASSWORD = "correct horse battery"


@dataclass
class Api:
    client: falcon.testing.TestClient
    storage: Storage
    data_dir: Path
    operator: dict[str, str]
    driver: dict[str, str]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    data_dir = tmp_path / "csms"
    storage = open_storage(None, data_dir=data_dir)
    auth = LocalAuthenticator(
        storage.users,
        storage.refresh_tokens,
        secret=b"s" * 32,
        duplicate_error=DuplicateError,
        hasher=argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    auth.create_user("op@example.com", PASSWORD, "operator")
    operator = auth.login("op@example.com", PASSWORD).access_token
    driver = auth.register("dr@example.com", PASSWORD).access_token
    app = create_app(CsmsSystem(CsmsConfig()), auth=auth, storage=storage, csms_data_dir=data_dir)
    try:
        yield Api(
            client=falcon.testing.TestClient(app),
            storage=storage,
            data_dir=data_dir,
            operator={"Authorization": f"Bearer {operator}"},
            driver={"Authorization": f"Bearer {driver}"},
        )
    finally:
        storage.close()


def test_an_operator_provisions_a_station_and_sees_its_password_once(api: Api) -> None:
    resp = api.client.simulate_post(
        API, json={"station_id": "st-042", "name": "Depot"}, headers=api.operator
    )
    assert resp.status_code == 201, resp.text
    password = resp.json["password"]
    assert resp.json["mqtt_username"] == "st-042"
    stored = api.storage.station_credentials.get("st-042")
    assert stored is not None
    assert verify_password(password, stored.password_hash)
    assert "st-042:$7$" in (api.data_dir / "mqtt" / "passwd").read_text()

    listing = api.client.simulate_get(API, headers=api.operator)
    assert listing.status_code == 200
    assert [s["station_id"] for s in listing.json["stations"]] == ["st-042"]
    assert password not in listing.text

    again = api.client.simulate_post(API, json={"station_id": "st-042"}, headers=api.operator)
    assert again.status_code == 409


def test_revoking_removes_the_station_from_the_broker_file(api: Api) -> None:
    api.client.simulate_post(API, json={"station_id": "st-7"}, headers=api.operator)
    resp = api.client.simulate_delete(f"{API}/st-7", headers=api.operator)
    assert resp.status_code == 204
    assert "st-7:" not in (api.data_dir / "mqtt" / "passwd").read_text()
    assert api.client.simulate_delete(f"{API}/st-7", headers=api.operator).status_code == 404


@pytest.mark.parametrize("station_id", ["csms", "a/b", "+", "", "x" * 65])
def test_an_unusable_station_id_is_refused(api: Api, station_id: str) -> None:
    resp = api.client.simulate_post(API, json={"station_id": station_id}, headers=api.operator)
    assert resp.status_code == 422, resp.text


def test_a_driver_and_an_anonymous_caller_are_refused(api: Api) -> None:
    body = {"station_id": "st-1"}
    assert api.client.simulate_post(API, json=body, headers=api.driver).status_code == 403
    assert api.client.simulate_post(API, json=body).status_code == 401
    assert api.client.simulate_get(API, headers=api.driver).status_code == 403
    assert api.storage.station_credentials.get("st-1") is None
