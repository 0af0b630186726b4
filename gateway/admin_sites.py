"""``smartcharge admin sites | site-set | site-limit | site-delete``: smart-charging sites,
written straight to the CSMS's database (local-only, like the account commands); the
running node follows within a second (``actors.site_router``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from gateway.admin_client import AdminError
from gateway.admin_output import emit, table
from gateway.admin_users import open_storage_for_writing
from gateway.sites_api import MAX_LIMIT_KW, SITE_ID, STATION_ID, site_json
from storage import SiteRecord

__all__ = ["SITE_COMMANDS", "add_site_commands"]


def _kw(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of kW") from None
    if not 0 <= value <= MAX_LIMIT_KW:
        raise argparse.ArgumentTypeError(f"a limit is 0 to {MAX_LIMIT_KW:g} kW")
    return value


def _step(raw: str) -> tuple[int, float]:
    """``07:00=60`` -> (420, 60000.0)."""
    when, _, kw = raw.partition("=")
    hours, _, minutes = when.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise argparse.ArgumentTypeError(f"{raw!r}: a step is HH:MM=KW, e.g. 07:00=60")
    return int(hours) * 60 + int(minutes), _kw(kw) * 1000


def add_site_commands(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    sub.add_parser("sites", parents=parents, help="list the smart-charging sites (local-only)")
    p = sub.add_parser("site-set", parents=parents, help="create or replace a site (local-only)")
    p.add_argument("site")
    p.add_argument("--limit-kw", type=_kw, required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--stations", nargs="*", default=[], metavar="STATION")
    p.add_argument(
        "--schedule",
        nargs="*",
        type=_step,
        default=[],
        metavar="HH:MM=KW",
        help="limits by time of day, e.g. 07:00=60 19:00=150",
    )
    p.add_argument("--timezone", default="UTC")
    p = sub.add_parser("site-limit", parents=parents, help="change a site's limit (local-only)")
    p.add_argument("site")
    p.add_argument("limit_kw", type=_kw)
    p = sub.add_parser("site-delete", parents=parents, help="remove a site (local-only)")
    p.add_argument("site")


def _show(args: argparse.Namespace, sites: Sequence[SiteRecord]) -> None:
    data = [site_json(s) for s in sites]
    rows = [
        [
            s["id"],
            s["name"],
            f"{s['limit_kw']:g}",
            len(s["station_ids"]),
            "" if s["live"] is None else f"{s['live']['allocated_kw']:g}",
            "" if s["live"] is None else f"{s['live']['measured_kw']:g}",
        ]
        for s in data
    ]
    emit(args, data, table(["SITE", "NAME", "LIMIT KW", "STATIONS", "ALLOC KW", "DRAW KW"], rows))


def cmd_sites(args: argparse.Namespace) -> None:
    with open_storage_for_writing(args) as storage:
        _show(args, storage.sites.all())


def cmd_site_set(args: argparse.Namespace) -> None:
    if not SITE_ID.match(args.site):
        raise AdminError(f"{args.site!r} is not a site id (A-Z a-z 0-9 _ -)")
    bad = [s for s in args.stations if not STATION_ID.match(s)]
    if bad:
        raise AdminError(f"not station ids: {', '.join(bad)}")
    with open_storage_for_writing(args) as storage:
        site = storage.sites.put(
            SiteRecord(
                id=args.site,
                name=args.name or args.site,
                limit_w=args.limit_kw * 1000,
                schedule=tuple(sorted(dict(args.schedule).items())),
                timezone=args.timezone,
                station_ids=tuple(args.stations),
            )
        )
        _show(args, [site])


def cmd_site_limit(args: argparse.Namespace) -> None:
    from storage.errors import NotFound

    with open_storage_for_writing(args) as storage:
        try:
            site = storage.sites.set_limit(args.site, args.limit_kw * 1000)
        except NotFound as exc:
            raise AdminError(str(exc)) from None
        _show(args, [site])


def cmd_site_delete(args: argparse.Namespace) -> None:
    with open_storage_for_writing(args) as storage:
        if not storage.sites.delete(args.site):
            raise AdminError(f"no site {args.site}")
    print(f"site {args.site} removed")


SITE_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "sites": cmd_sites,
    "site-set": cmd_site_set,
    "site-limit": cmd_site_limit,
    "site-delete": cmd_site_delete,
}
