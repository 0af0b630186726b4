"""One CSMS per broker and database: the lease with an epoch (issue 10, point 9).

- the store, on an injected clock (SQLite, and PostgreSQL in CI's second pass): a live lease
  refuses another holder and names it; an expired, released or dead-holder lease is taken
  over with epoch + 1; the old holder's renewal then fails and its keeper reports the loss;
- two ``smartcharge csms`` processes on the same broker and database: the second refuses to
  start (exit code 3, the holder named on stderr) while the first keeps serving; a clean
  stop releases the lease at once.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker import free_port
from gateway.lease import CSMS_LEASE, holder_id, holder_is_dead
from storage import (
    Lease,
    LeaseHeldError,
    LeaseKeeper,
    LeaseLostError,
    Storage,
    StorageError,
    open_storage,
    system_clock_ms,
)
from tests import db
from tests.driver_client import csms_process, wait_until
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.needs_db, pytest.mark.timeout(120)]

db_url = db.db_url  # the fixture: SQLite, or a fresh PostgreSQL database (SMARTCHARGE_DB_URL)

NAME = "csms/partition/0"
TTL_MS = 15_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, db_url: str | None, clock: Clock) -> Iterator[Storage]:
    storage = open_storage(db_url, data_dir=tmp_path / "db", clock_ms=clock)
    yield storage
    storage.close()


def test_a_live_lease_refuses_another_holder_and_names_it(store: Storage, clock: Clock) -> None:
    first = store.leases.acquire(NAME, "host-a:100", TTL_MS)
    assert (first.epoch, first.expires_at) == (1, clock.now + TTL_MS)
    clock.now += TTL_MS - 1
    with pytest.raises(LeaseHeldError, match="host-a:100") as refused:
        store.leases.acquire(NAME, "host-b:200", TTL_MS)
    assert refused.value.lease == first
    assert store.leases.get(NAME) == first


def test_an_expired_lease_is_taken_over_with_a_higher_epoch_and_fences_the_old_holder(
    store: Storage, clock: Clock
) -> None:
    first = store.leases.acquire(NAME, "host-a:100", TTL_MS)
    clock.now += TTL_MS
    second = store.leases.acquire(NAME, "host-b:200", TTL_MS)
    assert (second.holder, second.epoch) == ("host-b:200", 2)
    with pytest.raises(LeaseLostError, match="host-b:200"):
        store.leases.renew(first, TTL_MS)
    assert not store.leases.release(first), "the old holder released the new one's lease"
    assert store.leases.get(NAME) == second


def test_renewal_keeps_the_lease_and_the_keeper_stops_when_it_is_lost(
    store: Storage, clock: Clock
) -> None:
    lost: list[StorageError] = []
    lease = store.leases.acquire(NAME, "host-a:100", TTL_MS)
    keeper = LeaseKeeper(
        store.leases, lease, ttl_ms=TTL_MS, every_s=5, on_lost=lost.append, clock_ms=clock
    )
    for _ in range(4):  # 4 x 10 s: well past one TTL, still ours
        clock.now += 10_000
        assert keeper.renew_once()
        with pytest.raises(LeaseHeldError):
            store.leases.acquire(NAME, "host-b:200", TTL_MS)
    assert keeper.lease.expires_at == clock.now + TTL_MS
    assert keeper.renewals == 4
    assert not lost

    clock.now += TTL_MS  # the holder stalled past its TTL: another one takes over
    taken = store.leases.acquire(NAME, "host-b:200", TTL_MS)
    assert not keeper.renew_once()
    assert len(lost) == 1
    assert isinstance(lost[0], LeaseLostError)
    assert store.leases.get(NAME) == taken


def test_a_released_lease_or_one_whose_holder_is_dead_is_taken_at_once(
    store: Storage, clock: Clock
) -> None:
    first = store.leases.acquire(NAME, "host-a:100", TTL_MS)
    assert store.leases.release(first)
    second = store.leases.acquire(NAME, "host-b:200", TTL_MS)
    assert second.epoch == 2

    dead = {"host-b:200"}
    third = store.leases.acquire(NAME, "host-c:300", TTL_MS, stale=dead.__contains__)
    assert (third.holder, third.epoch) == ("host-c:300", 3)
    with pytest.raises(LeaseHeldError):
        store.leases.acquire(NAME, "host-d:400", TTL_MS, stale=dead.__contains__)


def test_a_holder_is_dead_only_on_this_host_and_without_its_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    assert holder_is_dead(holder_id(child.pid))
    assert not holder_is_dead(holder_id())
    assert not holder_is_dead(f"another-host-{socket.gethostname()}:{child.pid}")


# ============================================================================ two processes


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def lease_in(data_dir: Path, url: str | None) -> Lease | None:
    with open_storage(url, data_dir=data_dir) as storage:
        return storage.leases.get(CSMS_LEASE)


@pytest.mark.integration
@pytest.mark.slow
def test_a_second_csms_on_the_same_broker_and_database_refuses_to_start(
    mosquitto_url: str, tmp_path: Path, db_url: str | None
) -> None:
    data_dir = tmp_path / "csms"
    http_port, https_port = free_port(), free_port()
    with csms_process(
        mosquitto_url, data_dir, http_port, https_port, tmp_path / "first.log", db_url=db_url
    ) as first:
        wait_until(lambda: healthy(http_port), "the first CSMS to serve", timeout=60)
        held = lease_in(data_dir, db_url)
        assert held is not None
        assert held.holder == holder_id(first.pid)

        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "csms",
                "--mqtt-url",
                mosquitto_url,
                "--http-port",
                str(free_port()),
                "--https-port",
                str(free_port()),
                "--data-dir",
                str(data_dir),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=db.child_env(db_url),
        )
        assert second.returncode == 3, second.stderr
        assert "refusing to start" in second.stderr
        assert holder_id(first.pid) in second.stderr, second.stderr

        # The first one never noticed: still serving, still the holder, same epoch.
        assert first.poll() is None
        assert healthy(http_port)
        assert _renewed(lease_in(data_dir, db_url), held)

        os.killpg(first.pid, signal.SIGTERM)
        assert first.wait(30) == 0
    released = lease_in(data_dir, db_url)
    assert released is not None
    assert released.epoch == held.epoch
    # Released on a clean stop (expired now, not TTL_S after the last renewal), so the next
    # CSMS starts at once, from any host.
    assert released.expires_at <= system_clock_ms()
    with csms_process(
        mosquitto_url, data_dir, http_port, https_port, tmp_path / "third.log", db_url=db_url
    ) as third:
        wait_until(lambda: healthy(http_port), "a CSMS restarted at once", timeout=60)
        after = lease_in(data_dir, db_url)
        assert after is not None
        assert (after.holder, after.epoch) == (holder_id(third.pid), held.epoch + 1)


def _renewed(now: Lease | None, held: Lease) -> bool:
    return now is not None and (now.holder, now.epoch) == (held.holder, held.epoch)
