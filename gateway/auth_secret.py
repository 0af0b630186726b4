"""The JWT signing secret: one file in the data dir, created once (0600) and shared by every
gateway worker and the node (``gateway.auth``)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from pathlib import Path

from gateway.auth_model import SECRET_BYTES

__all__ = ["load_or_create_secret"]

log = logging.getLogger("gateway.auth")


def load_or_create_secret(path: Path) -> bytes:
    """Read the JWT signing secret, or create it (32 random bytes, mode 0600) on first use.

    The file appears atomically with its content (written aside, then hard-linked into
    place), so concurrent first starts agree on one secret and nobody reads a partial file.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its secret
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} holds {len(secret)} bytes; a secret needs {SECRET_BYTES}")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users: chmod 600 it", path)
    return secret
