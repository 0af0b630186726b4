"""One CSMS per broker and database: the CSMS's lease (``storage._leases``).

``smartcharge csms`` takes the lease ``csms/partition/0`` in its database before it starts
the gateway (and so before anything connects to the broker). A second CSMS on the same
database finds the lease live and refuses to start, naming the holder, instead of taking
the CSMS's MQTT client id and knocking the first one off its session every few seconds.

- **Renewal**: the worker that runs the actors renews the lease every :data:`RENEW_S`
  seconds for :data:`TTL_S` seconds; it renews once before the actors start, and if a
  renewal ever finds another holder (a higher epoch), the CSMS stops (the whole server).
- **Clean stop**: the lease is released (expired at once): a restart takes it at once.
- **After a crash** (``kill -9``): the next CSMS on the same host takes the lease over at
  once when the holder's process is gone (the holder is ``host:pid``; a pid is only checked
  on its own host); from another host it waits until the lease expires (at most
  :data:`TTL_S` seconds after the last renewal).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

from storage import (
    Lease,
    LeaseHeldError,
    LeaseKeeper,
    LeaseStore,
    StorageError,
    open_storage,
    system_clock_ms,
)

__all__ = ["CSMS_LEASE", "RENEW_S", "TTL_S", "CsmsLeaseRefused", "csms_keeper", "take_csms_lease"]

log = logging.getLogger(__name__)

CSMS_LEASE: Final = "csms/partition/0"
"""The single node's lease: partition 0 of 1 (later one per partition: ``docs/architecture.md``,
"Many machines")."""
TTL_S: Final = 15
RENEW_S: Final = 5.0


class CsmsLeaseRefused(RuntimeError):
    """Another live CSMS holds the lease; the message names it."""


def holder_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (another host's: unknown, so alive)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def take_csms_lease(db_url: str | None, data_dir: Path) -> Lease:
    """Take the lease for this process (before the gateway starts); raises
    :class:`CsmsLeaseRefused` if another CSMS holds it."""
    storage = open_storage(db_url, data_dir=data_dir)
    try:
        return storage.leases.acquire(CSMS_LEASE, holder_id(), TTL_S * 1000, stale=holder_is_dead)
    except LeaseHeldError as exc:
        held = exc.lease
        left_s = max(0.0, (held.expires_at - system_clock_ms()) / 1000)
        raise CsmsLeaseRefused(
            f"another CSMS is running on this database: {held.holder} holds the lease "
            f"{held.name!r} (epoch {held.epoch}, renewed for {left_s:.0f} s more). Stop it "
            f"first; if it crashed on another host, its lease expires within {TTL_S} s."
        ) from None
    finally:
        storage.close()


def csms_keeper(
    leases: LeaseStore, lease: Lease, on_lost: Callable[[StorageError], None] | None = None
) -> LeaseKeeper:
    """The renewal of ``lease`` in the worker; by default a lost lease stops the server
    (SIGTERM to the gunicorn master, whose pid the lease names)."""

    def stop_the_server(error: StorageError) -> None:
        log.error("the CSMS lost its lease and stops: %s", error)
        master = os.getppid()
        # Only our own master: an orphaned worker's parent is init (or a subreaper).
        target = master if lease.holder == holder_id(master) else os.getpid()
        os.kill(target, signal.SIGTERM)

    return LeaseKeeper(
        leases,
        lease,
        ttl_ms=TTL_S * 1000,
        every_s=RENEW_S,
        on_lost=on_lost or stop_the_server,
        clock_ms=system_clock_ms,
    )
