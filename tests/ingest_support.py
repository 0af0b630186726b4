"""Shared by the ingest path tests (tests/test_ingest_*.py): the bound of every wait, and the
autouse fixture that stops every Pykka actor a test leaves behind."""

from __future__ import annotations

from collections.abc import Iterator

import pykka
import pytest

WAIT_S = 20.0
"""Upper bound of every wait in the tests that use it (pytest-timeout stops the test anyway)."""


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    try:
        yield
    finally:
        pykka.ActorRegistry.stop_all()
