"""``smartcharge admin``: operator commands against a running CSMS.

Most commands go through the operator HTTPS API, as any client would::

    smartcharge admin status                      # every EVSE (no login needed; with one,
                                                  # the session ids too)
    smartcharge admin maintenance st-001-1 st-001-2 on   # operator login needed
    smartcharge admin start st-001-1 --target-soc 80
    smartcharge admin stop st-001-1
    smartcharge admin info st-001-1

The login comes from ``--email``/``--password`` or ``SMARTCHARGE_ADMIN_EMAIL`` /
``SMARTCHARGE_ADMIN_PASSWORD`` (asked for on a terminal when only the email is known); the
token lives in memory for one run. The CSMS allows 5 logins a minute per email, so scripts
should batch (``maintenance`` takes several EVSEs) rather than loop over single commands.
The server's certificate is checked against ``--cafile``, by default the self-signed one the
CSMS made in its data dir.

Some commands are **local-only**: the HTTP API has no endpoint for them, so they open the
CSMS's database directly (``--data-dir``, or ``--db-url`` for PostgreSQL) and must run on a
machine that can reach it::

    smartcharge admin users
    smartcharge admin sessions [--open]
    smartcharge admin create-operator ops@example.com [--password-stdin]
    smartcharge admin disable-user alice@example.com   # enable-user undoes it
    smartcharge admin delete-user alice@example.com

``--data-dir`` is the CSMS's data dir (``smartcharge csms --data-dir``) or the one of
``smartcharge up`` (whose CSMS keeps its files in ``<data-dir>/csms``); both are understood.
Every command takes ``--json`` for scripts. Errors exit with status 1 and the server's reason.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway.admin_client import API, AdminError, ApiClient
from gateway.admin_output import cell, csms_dir, emit, table, when
from gateway.admin_sites import SITE_COMMANDS, add_site_commands
from gateway.admin_users import USER_COMMANDS, add_user_commands

__all__ = ["AdminError", "ApiClient", "main"]

DEFAULT_URL = "https://127.0.0.1:8443"
EMAIL_ENV = "SMARTCHARGE_ADMIN_EMAIL"
PASSWORD_ENV = "SMARTCHARGE_ADMIN_PASSWORD"
URL_ENV = "SMARTCHARGE_URL"


def _default_cafile(data_dir: Path) -> Path | None:
    cert = csms_dir(data_dir) / "tls" / "cert.pem"
    return cert if cert.is_file() else None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./var"),
        help="the CSMS data dir, or the one of 'smartcharge up' (default ./var)",
    )
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the CSMS's HTTPS URL (default {DEFAULT_URL}; env {URL_ENV})",
    )
    remote.add_argument(
        "--cafile",
        type=Path,
        default=None,
        help="CA/certificate to trust (default: <data-dir>/[csms/]tls/cert.pem when present)",
    )
    remote.add_argument("--email", default=None, help=f"operator email (env {EMAIL_ENV})")
    remote.add_argument("--password", default=None, help=f"operator password (env {PASSWORD_ENV})")
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument(
        "--db-url",
        default=os.environ.get("SMARTCHARGE_DB_URL"),
        help="postgresql://... (default: SQLite in the data dir; env SMARTCHARGE_DB_URL)",
    )

    parser = argparse.ArgumentParser(
        prog="smartcharge admin", description="Operator commands against a running CSMS."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    both = [common, remote]
    sub.add_parser("status", parents=both, help="every EVSE: status, SoC, power, energy, session")
    p = sub.add_parser(
        "maintenance",
        parents=both,
        help="switch maintenance on or off, on one EVSE or several (one login)",
    )
    p.add_argument("evses", nargs="+", metavar="EVSE")
    p.add_argument("state", choices=["on", "off"])
    p = sub.add_parser("start", parents=both, help="start a session on an EVSE")
    p.add_argument("evse")
    p.add_argument("--target-soc", type=float, default=None, help="stop at this SoC, 1-100 %%")
    p = sub.add_parser("stop", parents=both, help="stop the session running on an EVSE")
    p.add_argument("evse")
    p = sub.add_parser("info", parents=both, help="ask the station for an EVSE's live state")
    p.add_argument("evse")
    sub.add_parser("users", parents=[common, local], help="list accounts (local-only)")
    p = sub.add_parser("sessions", parents=[common, local], help="list sessions (local-only)")
    p.add_argument("--open", action="store_true", help="only sessions still running")
    p.add_argument("--limit", type=int, default=50, help="newest N sessions (default 50)")
    add_user_commands(sub, [common, local])
    add_site_commands(sub, [common, local])
    return parser


def _credentials(args: argparse.Namespace) -> Callable[[], tuple[str, str]]:
    def get() -> tuple[str, str]:
        email = args.email or os.environ.get(EMAIL_ENV)
        password = args.password or os.environ.get(PASSWORD_ENV)
        if email and not password and sys.stdin.isatty():
            password = getpass.getpass(f"password for {email}: ")
        if not email or not password:
            raise AdminError(
                "this command needs an operator login: --email/--password, or"
                f" {EMAIL_ENV}/{PASSWORD_ENV}"
            )
        return email, password

    return get


def _client(args: argparse.Namespace) -> ApiClient:
    cafile = args.cafile if args.cafile is not None else _default_cafile(args.data_dir)
    if cafile is not None and not cafile.is_file():
        raise AdminError(f"no certificate at {cafile}")
    return ApiClient(args.url, cafile=cafile, credentials=_credentials(args))


# -- commands over HTTPS ----------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> None:
    # A public read; with an operator login at hand, an operator's (which names sessions).
    logged_in = bool(args.email or os.environ.get(EMAIL_ENV))
    fleet = _client(args).get(f"{API}/stations", auth=logged_in)
    rows = []
    for station in fleet["stations"]:
        for evse in station["evses"]:
            session = evse["session"]
            status = evse["status"]
            if evse["maintenance_pending"]:
                status += " (maintenance pending)"
            if not station["online"] and status != "Offline":
                status += " (station offline)"
            rows.append(
                [
                    station["id"],
                    evse["id"],
                    status,
                    evse["soc"],
                    evse["power_w"] / 1000,
                    None if session is None else session["energy_wh"] / 1000,
                    None if session is None else (session["id"] or "(hidden)")[:12],
                ]
            )
    headers = ["STATION", "EVSE", "STATUS", "SOC %", "KW", "KWH", "SESSION"]
    emit(args, fleet, table(headers, rows))


def _outcome_text(evse_id: str, what: str, outcome: dict[str, Any]) -> str:
    live = outcome.get("evse") or {}
    status = live.get("status", "?")
    return f"{evse_id}: {what} (now {status})"


def cmd_maintenance(args: argparse.Namespace) -> None:
    """Each EVSE in turn; the first refusal stops the run (the ones before it stay switched)."""
    client = _client(args)
    enabled = args.state == "on"
    outcomes, lines = [], []
    for evse_id in args.evses:
        outcome = client.call(
            "PUT", f"{API}/evses/{_quote(evse_id)}/maintenance", {"enabled": enabled}
        )
        live = outcome.get("evse") or {}
        what = f"maintenance {args.state}"
        if enabled and live.get("maintenance_pending") and not live.get("maintenance"):
            what += ", pending: it starts when the running session ends"
        outcomes.append(outcome)
        lines.append(_outcome_text(evse_id, what, outcome))
    emit(args, outcomes if len(outcomes) > 1 else outcomes[0], "\n".join(lines))


def cmd_start(args: argparse.Namespace) -> None:
    body = {} if args.target_soc is None else {"target_soc": args.target_soc}
    outcome = _client(args).call("POST", f"{API}/evses/{_quote(args.evse)}/start", body)
    emit(
        args, outcome, _outcome_text(args.evse, f"started session {outcome['session_id']}", outcome)
    )


def cmd_stop(args: argparse.Namespace) -> None:
    outcome = _client(args).call("POST", f"{API}/evses/{_quote(args.evse)}/stop", {})
    emit(args, outcome, _outcome_text(args.evse, "stopped", outcome))


def cmd_info(args: argparse.Namespace) -> None:
    outcome = _client(args).get(f"{API}/evses/{_quote(args.evse)}/info")
    live = outcome.get("evse")
    if not outcome["accepted"] or live is None:
        lines = [f"{args.evse}: the station refused: {outcome.get('reason')}"]
    else:
        width = max(len(k) for k in live)
        lines = [f"{key.ljust(width)}  {cell(value)}" for key, value in live.items()]
    emit(args, outcome, "\n".join(lines))


def _quote(evse_id: str) -> str:
    return urllib.parse.quote(evse_id, safe="")


# -- local-only commands ----------------------------------------------------------------------


def _open_storage(args: argparse.Namespace) -> Any:
    from storage import DB_FILENAME, StorageError, open_storage

    directory = csms_dir(args.data_dir)
    if args.db_url is None and not (directory / DB_FILENAME).is_file():
        raise AdminError(f"no CSMS database in {directory}: give --data-dir or --db-url")
    try:
        return open_storage(args.db_url, data_dir=directory)
    except StorageError as exc:
        raise AdminError(f"cannot open the CSMS database: {exc}") from None


def cmd_users(args: argparse.Namespace) -> None:
    storage = _open_storage(args)
    try:
        users, offset = [], 0
        while page := storage.users.list(limit=500, offset=offset):
            users.extend(page)
            offset += len(page)
    finally:
        storage.close()
    data = [
        {"id": u.id, "email": u.email, "role": str(u.role), "created_at": u.created_at}
        for u in users
    ]
    rows = [[u["email"], u["role"], when(u["created_at"]), u["id"]] for u in data]
    emit(args, data, table(["EMAIL", "ROLE", "CREATED", "ID"], rows))


def cmd_sessions(args: argparse.Namespace) -> None:
    """Open sessions, plus (without ``--open``) every driver's history, newest first."""
    storage = _open_storage(args)
    try:
        found = {s.id: s for s in storage.sessions.open_sessions()}
        emails: dict[str, str] = {}
        offset = 0
        while page := storage.users.list(limit=500, offset=offset):
            offset += len(page)
            for user in page:
                emails[user.id] = user.email
                if not args.open:
                    for s in storage.sessions.by_driver(user.id, limit=args.limit):
                        found[s.id] = s
    finally:
        storage.close()
    sessions = sorted(found.values(), key=lambda s: (s.started_at, s.id), reverse=True)
    data = [
        {
            "id": s.id,
            "evse_id": s.evse_id,
            "station_id": s.station_id,
            "driver": emails.get(s.driver_id) if s.driver_id else None,
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "energy_wh": round(s.energy_wh, 1),
            "end_reason": s.end_reason,
            "open": s.ended_at is None,
        }
        for s in sessions[: max(0, args.limit)]
    ]
    rows = [
        [
            s["id"][:12],
            s["evse_id"],
            s["driver"],
            when(s["started_at"]),
            when(s["ended_at"]) or "running",
            s["energy_wh"] / 1000,
            s["end_reason"],
        ]
        for s in data
    ]
    headers = ["SESSION", "EVSE", "DRIVER", "STARTED", "ENDED", "KWH", "END REASON"]
    emit(args, data, table(headers, rows))


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "status": cmd_status,
    "maintenance": cmd_maintenance,
    "start": cmd_start,
    "stop": cmd_stop,
    "info": cmd_info,
    "users": cmd_users,
    "sessions": cmd_sessions,
    **USER_COMMANDS,
    **SITE_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        COMMANDS[args.action](args)
    except AdminError as exc:
        print(f"smartcharge admin {args.action}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
