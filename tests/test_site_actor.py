"""The site actor (``actors.site.SiteActor``) on a manual clock: what it sends and when.

``set_limit`` goes only where a limit changed; a lower limit pauses EVSEs in turn, and each
round (``round_s`` on the clock) the longest-waiting go first; a schedule step changes the
limit on time; limits are renewed before they expire; an EV drawing less than its share
gives the rest away; a property test drives random event sequences and checks the sum
against the limit after each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.clock import ManualClock
from actors.site import (
    EvseSnapshot,
    ScheduleStep,
    SiteActor,
    SiteBoard,
    SiteConfig,
    SiteConfigChanged,
    SiteDepartures,
    SiteEvses,
    SiteState,
    limit_at,
)
from protocol import EvseStatus

pytestmark = pytest.mark.timeout(120)

ROUND_S = 60.0
TTL_S = 300.0


class Sent:
    """What the actor sent, as ``(evse_id, watts, expires_at_ms, fallback_w)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, evse_id: str, watts: int, expires: int, fallback: int) -> None:
        with self.lock:
            self.calls.append((evse_id, watts, expires, fallback))

    def take(self) -> list[tuple[str, int, int, int]]:
        with self.lock:
            out, self.calls = self.calls, []
        return out


def evse(
    n: int, *, charging: bool = True, power: float = 22_000.0, online: bool = True
) -> EvseSnapshot:
    return EvseSnapshot(
        evse_id=f"st-{n:03d}.1",
        station_id=f"st-{n:03d}",
        status=EvseStatus.CHARGING if charging else EvseStatus.AVAILABLE,
        session_open=charging,
        power_w=power if charging else 0.0,
        min_w=1_000.0,  # whole kW shares: the level's step (100 W) divides them
        max_w=22_000.0,
        reachable=online,
    )


def state_of(board: SiteBoard, site_id: str) -> SiteState:
    state = board.get(site_id)
    assert state is not None, f"site {site_id} published nothing"
    return state


def sync(ref: Any) -> None:
    """Wait until the actor has handled everything told before (an empty update)."""
    ref.ask(SiteEvses(evses=()), timeout=10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_s=1_800_000_000.0)


@pytest.fixture
def site(clock: ManualClock) -> Iterator[tuple[Any, Sent, SiteBoard]]:
    sent, board = Sent(), SiteBoard()
    config = SiteConfig(id="depot", name="Depot", limit_w=50_000.0)
    ref = SiteActor.start(config, send=sent, clock=clock, board=board, round_s=ROUND_S, ttl_s=TTL_S)
    try:
        yield ref, sent, board
    finally:
        ref.stop()


def test_ten_evses_share_50_kw_and_only_changed_limits_are_sent(
    site: Any, clock: ManualClock
) -> None:
    ref, sent, board = site
    ref.tell(SiteEvses(evses=tuple(evse(n) for n in range(10))))
    sync(ref)
    calls = sent.take()
    assert sorted(c[0] for c in calls) == [f"st-{n:03d}.1" for n in range(10)]
    assert {c[1] for c in calls} == {5_000}
    assert {c[2] for c in calls} == {clock.time_ms() + int(TTL_S * 1000)}
    assert {c[3] for c in calls} == {5_000}  # fallback: the site's limit over its EVSEs
    state = state_of(board, "depot")
    assert state.allocated_w == 50_000
    assert state.limit_w == 50_000

    ref.tell(SiteEvses(evses=(evse(3, power=5_000.0),)))  # same status: nothing to redo
    sync(ref)
    assert sent.take() == []


def test_a_lower_limit_pauses_evses_in_turn_and_rounds_rotate_them(
    site: Any, clock: ManualClock
) -> None:
    ref, sent, board = site
    ref.tell(SiteEvses(evses=tuple(evse(n) for n in range(10))))
    sync(ref)
    sent.take()
    ref.tell(SiteConfigChanged(config=SiteConfig(id="depot", name="Depot", limit_w=7_500.0)))
    sync(ref)
    state = state_of(board, "depot")
    assert len(state.paused) == 3
    assert state.allocated_w <= 7_500
    assert {c[1] for c in sent.take() if c[0] in state.paused} == {0}
    ever_paused: set[str] = set(state.paused)
    ran: set[str] = {k for k, w in state.evse_limits.items() if w > 0}
    for _ in range(10):
        clock.advance(ROUND_S)
        sync(ref)
        state = state_of(board, "depot")
        assert state.allocated_w <= 7_500
        ever_paused |= set(state.paused)
        ran |= {k for k, w in state.evse_limits.items() if w > 0}
    assert len(ran) == 10, "every EVSE charged within the rounds"
    assert len(ever_paused) > 3, "the pause went round"

    ref.tell(SiteConfigChanged(config=SiteConfig(id="depot", name="Depot", limit_w=50_000.0)))
    sync(ref)
    state = state_of(board, "depot")
    assert state.paused == ()
    assert state.allocated_w == 50_000


def test_limits_are_renewed_before_they_expire(site: Any, clock: ManualClock) -> None:
    ref, sent, _ = site
    ref.tell(SiteEvses(evses=(evse(1), evse(2))))
    sync(ref)
    first = sent.take()
    assert len(first) == 2
    clock.advance(TTL_S * 0.75)
    sync(ref)
    renewed = sent.take()
    assert sorted(c[0] for c in renewed) == ["st-001.1", "st-002.1"]
    assert all(c[2] > first[0][2] for c in renewed)


def test_an_ev_drawing_less_gives_its_share_to_the_others(site: Any) -> None:
    ref, sent, board = site
    ref.tell(SiteEvses(evses=(evse(1), evse(2), evse(3))))
    sync(ref)
    sent.take()  # 16,666 W each
    for _ in range(3):  # the EV settles at 4 kW over a few meter values
        ref.tell(SiteEvses(evses=(evse(1, power=4_000.0),)))
    sync(ref)
    state = state_of(board, "depot")
    assert state.evse_limits["st-001.1"] == 4_000 + 1_000  # its draw plus headroom
    assert state.evse_limits["st-002.1"] == state.evse_limits["st-003.1"] > 20_000
    assert sum(state.evse_limits.values()) <= 50_000


def test_an_offline_station_keeps_what_it_was_given(site: Any) -> None:
    ref, _, board = site
    ref.tell(SiteEvses(evses=tuple(evse(n) for n in range(5))))
    sync(ref)
    ref.tell(SiteEvses(evses=(evse(0, online=False),)))
    sync(ref)
    state = state_of(board, "depot")
    assert state.evse_limits["st-000.1"] == 10_000
    assert sum(state.evse_limits.values()) <= 50_000


def test_a_schedule_step_changes_the_limit_on_time(clock: ManualClock) -> None:
    # 1_800_000_000 is 2027-01-15 08:00 UTC: day 60 kW from 07:00, night 150 kW from 19:00
    config = SiteConfig(
        id="s",
        name="S",
        limit_w=1.0,
        schedule=(
            ScheduleStep(start_minute=7 * 60, limit_w=60_000.0),
            ScheduleStep(start_minute=19 * 60, limit_w=150_000.0),
        ),
    )
    assert limit_at(config, clock.time_s()) == (60_000.0, clock.time_s() + 11 * 3600)
    board, sent = SiteBoard(), Sent()
    ref = SiteActor.start(config, send=sent, clock=clock, board=board, round_s=1e9, ttl_s=1e9)
    try:
        ref.tell(SiteEvses(evses=tuple(evse(n) for n in range(10))))
        sync(ref)
        state = state_of(board, "s")
        assert state.limit_w == 60_000
        assert state.allocated_w == 60_000
        assert clock.wait_for_timer(at_least_s=11 * 3600 - 1)
        clock.advance(11 * 3600 + 1)
        sync(ref)
        state = state_of(board, "s")
        assert state.limit_w == 150_000
        assert state.allocated_w == 10 * 15_000
    finally:
        ref.stop()


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("limit"),
            st.one_of(
                st.integers(min_value=0, max_value=120_000),
                # near the start value: changes smaller than the send tolerance
                st.integers(min_value=39_000, max_value=40_000),
            ),
        ),
        st.tuples(st.just("start"), st.integers(min_value=0, max_value=11)),
        st.tuples(st.just("stop"), st.integers(min_value=0, max_value=11)),
        st.tuples(st.just("draw"), st.integers(min_value=0, max_value=11)),
        st.tuples(st.just("round"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=80, deadline=None)
@given(ops=operations)
def test_whatever_happens_the_sum_of_limits_stays_under_the_site_limit(
    ops: list[tuple[str, int]],
) -> None:
    clock = ManualClock(start_s=1_800_000_000.0)
    board, sent = SiteBoard(), Sent()
    limit = 40_000.0
    ref = SiteActor.start(
        SiteConfig(id="p", name="P", limit_w=limit),
        send=sent,
        clock=clock,
        board=board,
        round_s=ROUND_S,
        ttl_s=TTL_S,
    )
    last: dict[str, int] = {}
    try:
        for op, arg in ops:
            if op == "limit":
                limit = float(arg)
                ref.tell(SiteConfigChanged(config=SiteConfig(id="p", name="P", limit_w=limit)))
            elif op in ("start", "stop"):
                ref.tell(SiteEvses(evses=(evse(arg, charging=op == "start"),)))
            elif op == "draw":
                ref.tell(SiteEvses(evses=(evse(arg, power=2_000.0),)))
            else:
                clock.advance(ROUND_S)
            sync(ref)
            for evse_id, watts, _, _ in sent.take():
                last[evse_id] = watts
            state = state_of(board, "p")
            assert state.allocated_w <= limit
            # what the stations with open sessions were last told fits too
            assert sum(last.get(k, 0) for k in state.evse_limits) <= limit
    finally:
        ref.stop()


def test_what_the_evses_draw_is_published_and_sampled_for_the_chart(
    site: Any, clock: ManualClock
) -> None:
    ref, sent, board = site
    ref.tell(SiteEvses(evses=(evse(1), evse(2))))
    sync(ref)
    sent.take()
    assert state_of(board, "depot").measured_w == 44_000
    ref.tell(SiteEvses(evses=(evse(1, power=7_000.0),)))  # a meter value, nothing to redo
    sync(ref)
    assert sent.take() == []
    assert state_of(board, "depot").measured_w == 29_000
    clock.advance(10)
    ref.tell(SiteEvses(evses=(evse(2, power=6_000.0),)))
    sync(ref)
    history = state_of(board, "depot").history
    # a sample when the actor started (nothing yet), then one 10 s later
    assert [(h[1], h[3]) for h in history] == [(50_000.0, 0.0), (50_000.0, 13_000.0)]
    assert history[1][0] - history[0][0] == 10_000


def test_a_session_leaving_soon_with_much_to_charge_gets_a_larger_share(
    site: Any, clock: ManualClock
) -> None:
    ref, _, board = site

    def charging(n: int, soc: float, energy_wh: float) -> EvseSnapshot:
        return replace(
            evse(n), session_id=f"s{n}", soc=soc, target_soc=100.0, session_energy_wh=energy_wh
        )

    ref.tell(SiteEvses(evses=(charging(1, 20.0, 0.0), charging(2, 20.0, 0.0), evse(3))))
    # 10 % gained for 6 kWh: a 60 kWh battery, 48 kWh still to go for each of them
    ref.tell(SiteEvses(evses=(charging(1, 30.0, 6_000.0), charging(2, 30.0, 6_000.0))))
    sync(ref)
    even = state_of(board, "depot").evse_limits
    assert even["st-001.1"] == even["st-002.1"]
    ref.tell(SiteDepartures(departures={"s1": clock.time_ms() + 2 * 3600 * 1000}))
    sync(ref)
    shares = state_of(board, "depot").evse_limits
    assert shares["st-001.1"] > shares["st-002.1"] + 5_000  # 24 kW an hour needed: 4 shares
    assert sum(shares.values()) <= 50_000
