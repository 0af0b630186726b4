"""The HTTP client of ``smartcharge admin`` (and of ``scripts/examples/``): the gateway's API
over HTTPS for writes and plain HTTP for reads, with the operator's token obtained (and renewed)
on demand."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["API", "AdminError", "ApiClient"]

API = "/api/v1"


class AdminError(Exception):
    """What went wrong, in words for the operator; ``main`` prints it and exits 1."""


# -- the HTTPS client -------------------------------------------------------------------------


class ApiClient:
    """JSON over HTTPS with an operator's bearer token, logged in on first use."""

    def __init__(
        self,
        base_url: str,
        *,
        cafile: Path | None,
        credentials: Callable[[], tuple[str, str]],
        timeout_s: float = 30.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if self._base.startswith("https://"):
            self._context = ssl.create_default_context(
                cafile=None if cafile is None else str(cafile)
            )
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._token: str | None = None

    def get(self, path: str, *, auth: bool = True) -> Any:
        return self.call("GET", path, auth=auth)

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            self._base + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout_s, context=self._context
            ) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AdminError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise AdminError(
                    f"cannot verify the certificate of {self._base}: {reason.verify_message};"
                    " pass the CSMS's certificate with --cafile"
                ) from None
            raise AdminError(f"cannot reach {self._base}: {reason}") from None
        except (TimeoutError, OSError) as exc:
            raise AdminError(f"cannot reach {self._base}: {exc}") from None
        return json.loads(raw) if raw.strip() else None

    def token(self) -> str:
        if self._token is None:
            email, password = self._credentials()
            tokens = self.call(
                "POST",
                f"{API}/auth/login",
                {"email": email, "password": password},
                auth=False,
            )
            token = str(tokens["access_token"])
            role = _role_of(token)
            if role != "operator":
                raise AdminError(
                    f"{email} is a {role or 'non-operator'} account: admin commands need an"
                    " operator (see 'smartcharge admin create-operator')"
                )
            self._token = token
        return self._token


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
        reason = body.get("reason") or body.get("title")
    except (ValueError, AttributeError, OSError):
        reason = None
    return f"{reason or exc.reason} (HTTP {exc.code})"


def _role_of(token: str) -> str | None:
    """The ``role`` claim, read without verification: only to explain a refusal early."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) else None


# -- arguments --------------------------------------------------------------------------------
