"""Shared by the API security tests (tests/test_security_*.py): the EVSE they act on, and the
reason an error response gives."""

from __future__ import annotations

import falcon.testing

from tests.api_fixtures import EVSE_IDS

EVSE = EVSE_IDS[0]


def reason_of(result: falcon.testing.Result) -> str:
    body = result.json
    assert isinstance(body, dict), result.text
    reason = body.get("reason")
    assert isinstance(reason, str), body
    assert reason.strip(), body
    return reason
