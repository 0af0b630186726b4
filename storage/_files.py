"""Files only their owner may read: the data dir (0700) and what holds secrets in it (0600):
the database (password hashes), its WAL files, TLS keys, the JWT secret, demo logins.

New ones are created with those modes whatever the umask; existing ones with looser modes
(made by an older version, or by hand) are tightened, with a warning naming them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["private_dir", "private_file"]

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or tighten it to 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path, *, create: bool = False) -> Path:
    """Tighten ``path`` to mode 0600 if it exists; with ``create``, make it empty if not."""
    if create:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
            os.chmod(path, FILE_MODE)  # the umask may have cleared bits, never added any
        except FileExistsError:
            pass
    if path.exists():
        _tighten(path, FILE_MODE)
    return path


def _tighten(path: Path, mode: int) -> None:
    current = path.stat().st_mode & 0o777
    if current & 0o077:
        log.warning("%s had mode %o (others could read it): now %o", path, current, mode)
        os.chmod(path, mode)
