"""``gateway.id_tags_api`` on the test's database, through a bare Falcon app: a driver cannot
probe which card numbers other accounts hold (``docs/ocpp.md``, "RFID cards")."""

from __future__ import annotations

from pathlib import Path

import falcon
import falcon.testing
import pytest

from gateway.auth_model import Principal
from gateway.id_tags_api import REGISTRATIONS_PER_HOUR, add_id_tag_routes
from tests import db
from tests.db import open_test_storage

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(60)]

db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)


class _Caller:
    """The principal named by ``X-User`` (the real app verifies a bearer token)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        user = req.get_header("X-User")
        req.context.principal = (
            None if user is None else Principal(user_id=user, email=f"{user}@x", role="driver")
        )


def test_registering_is_rate_limited_per_account_so_others_cards_cannot_be_probed(
    tmp_path: Path, db_url: str | None
) -> None:
    storage = open_test_storage(tmp_path / "csms", db_url)
    try:
        victim = storage.users.create("victim@example.com", "hash", "driver")
        storage.id_tags.register(victim.id, "04000077")
        app = falcon.App(middleware=[_Caller()])
        add_id_tag_routes(app, storage)
        client = falcon.testing.TestClient(app)

        def post(user: str, tag: str) -> falcon.testing.Result:
            return client.simulate_post(
                "/api/v1/me/tags", json={"id_tag": tag}, headers={"X-User": user}
            )

        answers = [post("mallory", f"040000{n:02d}") for n in range(100)]
        allowed = [a for a in answers if a.status_code != 429]
        assert len(allowed) == REGISTRATIONS_PER_HOUR
        # the victim's card (number 77) was never answered for
        assert not any("another account" in a.text for a in answers)
        refused = post("mallory", "04000077")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        # another account is not held back by Mallory's probing
        assert post("trudy", "TRUDY-1").status_code == 201
        assert [t.id_tag for t in storage.id_tags.of_driver("mallory")] == [
            f"040000{n:02d}" for n in range(10)
        ]
    finally:
        storage.close()
