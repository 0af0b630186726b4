"""Feeds the site actors: :class:`SiteRouter`, a listener on its own host.

It keeps every EVSE's latest :class:`~actors.site.EvseSnapshot`, hands each site actor the
EVSEs of its stations that changed, one ``tell`` per site per burst (``batch_done``), and
every ``poll_s`` reads the sites from storage (a few rows): a new site gets an actor, a
changed one its new config (and the snapshots of stations that joined it), a removed one
is stopped. Whoever changed the table (a gateway worker, ``smartcharge admin``), the node
follows within ``poll_s``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pykka

from actors.clock import Clock
from actors.commands import Commands
from actors.evse_state import EvseState
from actors.listeners import EvseListener
from actors.messages import EvseChanged
from actors.site import SiteActor
from actors.site_model import (
    EvseSnapshot,
    ScheduleStep,
    SiteBoard,
    SiteConfig,
    SiteConfigChanged,
    SiteDepartures,
    SiteEvses,
    SiteState,
    state_json,
)
from protocol import EvseStatus, SetLimitArgs
from storage import SiteRecord, SiteStore

__all__ = ["SiteRouter", "site_config", "smart_charging", "snapshot"]

log = logging.getLogger(__name__)


def snapshot(state: EvseState) -> EvseSnapshot:
    descriptor = state.descriptor
    return EvseSnapshot(
        evse_id=state.evse_id,
        station_id=state.station_id,
        status=state.status,
        session_open=state.session_open,
        power_w=float(state.power_w or 0.0),
        min_w=float(descriptor.min_power_w),
        max_w=float(descriptor.max_power_w),
        reachable=state.status is not EvseStatus.OFFLINE,
        session_id=state.session_id,
        soc=state.soc,
        target_soc=state.target_soc,
        session_energy_wh=float(state.session_energy_wh or 0.0),
    )


def site_config(record: SiteRecord) -> SiteConfig:
    return SiteConfig(
        id=record.id,
        name=record.name,
        limit_w=record.limit_w,
        station_ids=frozenset(record.station_ids),
        schedule=tuple(ScheduleStep(start_minute=m, limit_w=w) for m, w in record.schedule),
        timezone=record.timezone,
        evse_limits=dict(record.evse_limits),
    )


class SiteRouter(EvseListener):
    """See the module docstring. ``load`` reads the sites; ``start_site`` starts an actor."""

    def __init__(
        self,
        *,
        load: Callable[[], Iterable[SiteRecord]],
        start_site: Callable[[SiteConfig], pykka.ActorRef[Any]],
        departures: Callable[[], Mapping[str, int]] = dict,
        monotonic: Callable[[], float],
        poll_s: float = 1.0,
    ) -> None:
        self._load = load
        self._departures = departures
        self._known_departures: Mapping[str, int] = {}
        self._start_site = start_site
        self._monotonic = monotonic
        self._poll_s = poll_s
        self._last_poll = float("-inf")
        self.sites: dict[str, tuple[SiteConfig, pykka.ActorRef[Any]]] = {}
        self._site_of: dict[str, str] = {}  # station id -> site id
        self._latest: dict[str, EvseSnapshot] = {}
        self._changed: dict[str, dict[str, EvseSnapshot]] = {}

    def started(self) -> None:
        self.sync()

    def evse_changed(self, event: EvseChanged) -> None:
        evse = snapshot(event.state)
        self._latest[evse.evse_id] = evse
        site = self._site_of.get(evse.station_id)
        if site is not None:
            self._changed.setdefault(site, {})[evse.evse_id] = evse

    def batch_done(self) -> None:
        changed, self._changed = self._changed, {}
        for site_id, evses in changed.items():
            known = self.sites.get(site_id)
            if known is not None:
                _tell(known[1], SiteEvses(evses=tuple(evses.values())))

    def tick(self) -> None:
        if self._monotonic() - self._last_poll >= self._poll_s:
            self.sync()

    def stopped(self) -> None:
        for _, ref in self.sites.values():
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                ref.stop(block=True, timeout=5)
        self.sites.clear()

    def sync(self) -> None:
        """Read the sites and bring the actors in line with them."""
        self._last_poll = self._monotonic()
        try:
            wanted = {r.id: site_config(r) for r in self._load()}
            departures = self._departures()
        except Exception:  # storage away for a moment: keep what runs, try next poll
            log.warning("sites not read; keeping the current ones", exc_info=True)
            return
        for site_id in list(self.sites):
            if site_id not in wanted:
                _, ref = self.sites.pop(site_id)
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.stop(block=False)
        for site_id, config in wanted.items():
            known = self.sites.get(site_id)
            joined = config.station_ids - (known[0].station_ids if known else frozenset())
            if known is None:
                ref = self._start_site(config)
                self.sites[site_id] = (config, ref)
            elif known[0] != config:
                ref = known[1]
                self.sites[site_id] = (config, ref)
                _tell(ref, SiteConfigChanged(config=config))
            else:
                continue
            members = tuple(e for e in self._latest.values() if e.station_id in joined)
            if members:
                _tell(ref, SiteEvses(evses=members))
        self._site_of = {
            station: site_id
            for site_id, (config, _) in self.sites.items()
            for station in config.station_ids
        }
        if departures != self._known_departures:
            self._known_departures = departures
            for _, ref in self.sites.values():
                _tell(ref, SiteDepartures(departures=departures))


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


def smart_charging(
    sites: SiteStore, *, commands: Commands, clock: Clock, board: SiteBoard, round_s: float
) -> SiteRouter:
    """The CSMS's smart charging: a router that starts a :class:`SiteActor` per stored site,
    whose ``set_limit`` commands are told to the EVSE actors (never waited for) and whose
    decisions are recorded in ``sites`` (for the API in any process) and on ``board``."""

    def send(evse_id: str, watts: int, expires_at: int, fallback_w: int) -> None:
        commands.send(
            evse_id,
            SetLimitArgs(limit_w=watts, expires_at=expires_at, fallback_w=fallback_w),
            ask_supervisor=False,
        )

    def start_site(config: SiteConfig) -> pykka.ActorRef[Any]:
        def record(state: SiteState) -> None:
            sites.put_live(state.id, state_json(state))

        return SiteActor.start(
            config, send=send, clock=clock, board=board, round_s=round_s, record=record
        )

    return SiteRouter(
        load=lambda: sites.all(live=False),
        departures=sites.departures,
        start_site=start_site,
        monotonic=clock.monotonic,
    )
