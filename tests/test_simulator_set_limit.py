"""The station simulator under power limits (``set_limit``, docs/protocol.md section 6.4): the
limit caps the next meter sample, a limit below the EVSE's minimum suspends the session and a
higher one resumes it, a lapsed limit falls back, the limit survives a restart; a hypothesis
property over the pure EVSE functions; and one station driven through a real Mosquitto."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    CommandReply,
    EvseDescriptor,
    EvseId,
    EvseStatus,
    Message,
    MeterValues,
    SessionId,
    SetLimitArgs,
    StartArgs,
    StationBirth,
    StopArgs,
    all_station_topics_filter,
    encode,
    parse,
)
from simulator import ManualClock, SimClock, StationSimulator, StationStore, evse
from simulator.evse import EventKind, EvseEvent, EvseSpec, EvseState
from simulator.persistence import state_from_json, state_to_json
from tests.simulator_support import (
    EVSE,
    OTHER,
    SID,
    charging,
    command,
    descriptor,
    reply,
    run,
    send,
    station,
    statuses,
)

S = EvseStatus
HOUR_MS = 3_600_000
MIN_W = 1_380.0  # the default min_power_w of the test station's EVSEs


def meters(messages: list[Message], evse_id: str = EVSE) -> list[MeterValues]:
    return [m for m in messages if isinstance(m, MeterValues) and m.evse_id == evse_id]


def limit(
    sim: StationSimulator, limit_w: float, *, lasts_s: float = 3600.0, **args: Any
) -> list[Message]:
    """``set_limit`` on EVSE 1, lapsing ``lasts_s`` from now (on the station's clock)."""
    now_ms = int(sim.offline_message().ts)
    return send(sim, "set_limit", limit_w=limit_w, expires_at=now_ms + int(lasts_s * 1000), **args)


# --------------------------------------------------------------------------- the command


def test_a_limit_is_accepted_and_caps_the_next_meter_value() -> None:
    sim, clock = charging()  # a 22 kW EVSE, a car that takes 22 kW
    before = meters(run(sim, clock, 10))
    assert [m.power_w for m in before] == [22_000.0, 22_000.0]
    out = limit(sim, 7_400.0)
    answer = reply(out)
    assert answer.accepted
    assert answer.reason is None
    assert answer.info == sim.evse_info(EVSE)
    assert answer.info is not None
    assert answer.info.status is S.CHARGING
    assert answer.info.power_w == 22_000.0, "the reply shows the last sample's power"
    assert statuses(out) == [], "a limit that lets the EVSE charge changes no status"
    after = meters(run(sim, clock, 15))
    assert [m.power_w for m in after] == [7_400.0] * 3
    assert after[0].ts - before[-1].ts == 5_000, "the very next sample, on its usual beat"


def test_a_limit_never_raises_the_power_above_the_evse_or_the_car() -> None:
    sim, clock = charging()
    assert reply(limit(sim, 1_000_000.0)).accepted
    assert {m.power_w for m in meters(run(sim, clock, 20))} == {22_000.0}


def test_a_limit_below_the_minimum_suspends_and_a_higher_one_resumes() -> None:
    sim, clock = charging()
    run(sim, clock, 10)
    out = limit(sim, MIN_W - 1)
    assert reply(out).accepted
    assert reply(out).info == sim.evse_info(EVSE)
    assert sim.evse_info(EVSE).status is S.SUSPENDED_EVSE
    assert statuses(out) == [S.SUSPENDED_EVSE]
    info = sim.evse_info(EVSE)
    assert (info.power_w, info.session_id) == (0.0, "s-1"), "the session stays open"
    energy = info.energy_wh
    assert meters(run(sim, clock, 60)) == [], "no energy flows, so no meter values"
    assert sim.evse_info(EVSE).energy_wh == energy

    out = limit(sim, MIN_W)
    assert reply(out).accepted
    assert statuses(out) == [S.CHARGING]
    assert [m.power_w for m in meters(run(sim, clock, 10))] == [MIN_W, MIN_W]
    assert sim.evse_info(EVSE).energy_wh > energy


def test_a_zero_limit_suspends_and_stop_ends_the_suspended_session() -> None:
    sim, _ = charging()
    assert statuses(limit(sim, 0.0)) == [S.SUSPENDED_EVSE]
    out = send(sim, "stop", session_id="s-1")
    assert reply(out).accepted
    assert statuses(out) == [S.FINISHING]
    assert meters(out) == [], "nothing to meter while suspended"


def test_maintenance_asked_during_a_suspension_waits_for_the_session_end() -> None:
    sim, _ = charging()
    limit(sim, 0.0)
    out = send(sim, "maintenance", enabled=True)
    assert reply(out).accepted
    assert sim.evse_info(EVSE).status is S.SUSPENDED_EVSE
    assert sim.evse_info(EVSE).maintenance_pending


def test_a_session_started_under_a_low_limit_waits_suspended() -> None:
    sim, clock = station()
    out = limit(sim, 500.0)
    assert reply(out).accepted, "accepted while Available: it waits for the next session"
    assert statuses(out) == []
    out = send(sim, "start", session_id="s-1")
    assert statuses(out) == [S.PREPARING]
    assert statuses(run(sim, clock, 30)) == [S.SUSPENDED_EVSE]
    assert statuses(limit(sim, 11_000.0)) == [S.CHARGING]
    assert {m.power_w for m in meters(run(sim, clock, 10))} == {11_000.0}


def test_the_limit_outlives_the_session_it_was_set_in() -> None:
    sim, clock = charging()
    limit(sim, 3_000.0)
    send(sim, "stop")
    while sim.evse_info(EVSE).status is not S.AVAILABLE:
        run(sim, clock, 5)
    send(sim, "start", session_id="s-2")
    assert {m.power_w for m in meters(run(sim, clock, 20))} == {3_000.0}


@pytest.mark.parametrize("status", [S.AVAILABLE, S.UNAVAILABLE, S.RESERVED, S.FINISHING])
def test_a_limit_is_accepted_in_any_status(status: EvseStatus) -> None:
    sim, _ = charging() if status is S.FINISHING else station()
    match status:
        case S.UNAVAILABLE:
            send(sim, "maintenance", enabled=True)
        case S.RESERVED:
            send(sim, "reserve", reservation_id="r-1")
        case S.FINISHING:
            send(sim, "stop")
    assert sim.evse_info(EVSE).status is status
    out = limit(sim, 0.0)
    assert reply(out).accepted
    assert statuses(out) == []
    assert sim.evse_info(EVSE).status is status


def test_invalid_limits_and_unknown_evses_are_refused_as_for_any_command() -> None:
    sim, clock = charging()
    now_ms = int(clock.now() * 1000)
    bad = send(sim, "set_limit", limit_w=-5, expires_at=now_ms + HOUR_MS)
    assert (reply(bad).accepted, reply(bad).reason) == (False, "invalid_command")
    assert reply(bad).info is not None
    missing = send(sim, "set_limit", limit_w=5_000)  # expires_at is required
    assert reply(missing).reason == "invalid_command"
    unknown = send(sim, "set_limit", evse="9", limit_w=5_000, expires_at=now_ms + HOUR_MS)
    assert (reply(unknown).reason, reply(unknown).info) == ("unknown_evse", None)
    assert {m.power_w for m in meters(run(sim, clock, 10))} == {22_000.0}, "nothing changed"


def test_each_evse_has_its_own_limit() -> None:
    sim, clock = charging()
    send(sim, "start", evse=OTHER, session_id="s-2")
    limit(sim, 4_000.0)
    out = run(sim, clock, 20)
    assert {m.power_w for m in meters(out)} == {4_000.0}
    assert meters(out, OTHER)
    assert sim.evse_state(OTHER).limit_w is None


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("tick", [5.0, 30.0])
def test_a_lapsed_limit_falls_back_to_the_fallback(tick: float) -> None:
    """Each sample is metered under the limit of its own time, however late the tick."""
    sim, clock = charging()
    limit(sim, 3_000.0, lasts_s=12.0, fallback_w=5_000.0)
    out = meters(run(sim, clock, 30, step=tick))
    assert [m.power_w for m in out] == [3_000.0, 3_000.0, 5_000.0, 5_000.0, 5_000.0, 5_000.0]


def test_a_lapsed_limit_without_a_fallback_falls_back_to_the_minimum() -> None:
    sim, clock = charging()
    limit(sim, 11_000.0, lasts_s=10.0)
    out = meters(run(sim, clock, 20))
    assert [m.power_w for m in out] == [11_000.0, MIN_W, MIN_W, MIN_W]
    assert sim.evse_state(EVSE).limit_w == MIN_W
    assert sim.evse_state(EVSE).limit_expires_at is None, "the fallback never lapses"


def test_a_fallback_below_the_minimum_suspends_at_the_lapse_and_a_new_limit_resumes() -> None:
    sim, clock = charging()
    limit(sim, 11_000.0, lasts_s=7.0, fallback_w=0.0)
    out = run(sim, clock, 20)
    assert [m.power_w for m in meters(out)] == [11_000.0]
    assert statuses(out) == [S.SUSPENDED_EVSE]
    assert statuses(limit(sim, 22_000.0)) == [S.CHARGING]


def test_a_suspension_lapsing_to_a_chargeable_fallback_resumes() -> None:
    sim, clock = charging()
    limit(sim, 0.0, lasts_s=12.0, fallback_w=6_000.0)
    out = run(sim, clock, 30)
    assert statuses(out) == [S.CHARGING]
    assert {m.power_w for m in meters(out)} == {6_000.0}


def test_a_limit_already_lapsed_sets_its_fallback_at_once() -> None:
    sim, _ = charging()
    out = limit(sim, 22_000.0, lasts_s=-1.0, fallback_w=500.0)
    assert reply(out).accepted
    assert statuses(out) == [S.SUSPENDED_EVSE]


def test_a_limit_lasts_as_long_in_real_time_on_an_accelerated_clock() -> None:
    real = ManualClock()
    sim = StationSimulator(descriptor(), clock=SimClock(10.0), wall_clock=real, seed=1)
    sent = real.now()
    request = command("set_limit", sent=sent, limit_w=5_000, expires_at=int(sent * 1000) + 60_000)
    assert reply(sim.handle_command(request)).accepted
    expires = sim.evse_state(EVSE).limit_expires_at
    assert expires is not None
    sim_now_ms = SimClock(10.0).now() * 1000  # about the station's simulated now
    assert expires - sim_now_ms == pytest.approx(600_000, abs=60_000), "60 s real = 600 s simulated"


# --------------------------------------------------------------------------- persistence


def test_a_limit_survives_the_json_round_trip() -> None:
    state = EvseState(
        evse_id=EvseId("1"), limit_w=7_400.0, limit_expires_at=1_700_000_300_000, fallback_w=None
    )
    raw = state_to_json(state, 1_700_000_000.0)
    assert (raw["limit_w"], raw["limit_expires_at"], raw["fallback_w"]) == (
        7_400.0,
        1_700_000_300_000,
        None,
    )
    assert state_from_json(EvseId("1"), raw, 1_700_000_000.0) == state
    with_fallback = replace(state, fallback_w=3_000.0)
    assert state_from_json(EvseId("1"), state_to_json(with_fallback, 0.0), 0.0) == with_fallback


def test_a_file_of_before_set_limit_loads_without_a_limit() -> None:
    raw = state_to_json(EvseState(evse_id=EvseId("1")), 0.0)
    for key in ("limit_w", "limit_expires_at", "fallback_w"):
        del raw[key]
    state = state_from_json(EvseId("1"), raw, 0.0)
    assert (state.limit_w, state.limit_expires_at, state.fallback_w) == (None, None, None)


@pytest.mark.parametrize(
    ("key", "value"), [("limit_w", -1), ("limit_w", "7400"), ("limit_expires_at", 1.5)]
)
def test_a_bad_limit_in_a_file_is_refused(key: str, value: Any) -> None:
    from simulator import SnapshotError

    raw = {**state_to_json(EvseState(evse_id=EvseId("1")), 0.0), key: value}
    with pytest.raises(SnapshotError):
        state_from_json(EvseId("1"), raw, 0.0)


def test_a_restarted_station_keeps_its_limit_and_its_suspension(tmp_path: Any) -> None:
    sim, clock = charging()
    limit(sim, 1_000.0, lasts_s=600.0, fallback_w=9_000.0)
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    clock.advance(60)
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    assert again.evse_info(EVSE).status is S.SUSPENDED_EVSE
    assert again.evse_state(EVSE).limit_w == 1_000.0
    assert meters(run(again, clock, 60)) == []
    assert again.evse_info(EVSE).status is S.SUSPENDED_EVSE


def test_a_limit_that_lapsed_while_the_station_was_down_resumes_from_the_restart(
    tmp_path: Any,
) -> None:
    sim, clock = charging()
    limit(sim, 0.0, lasts_s=30.0, fallback_w=9_000.0)
    energy = sim.evse_info(EVSE).energy_wh
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    clock.advance(3600)  # down for an hour, the limit lapsed half a minute in
    again = StationSimulator(descriptor(), clock=clock, seed=1, snapshot=store.load())
    out = run(again, clock, 10)
    assert statuses(out) == [S.CHARGING]
    assert [m.power_w for m in meters(out)] == [9_000.0, 9_000.0]
    charged = again.evse_info(EVSE).energy_wh - energy
    assert charged == pytest.approx(9_000.0 * 10 / 3600, rel=0.01), "the downtime is not metered"


def test_a_restart_with_a_higher_minimum_suspends_a_session_its_limit_no_longer_allows(
    tmp_path: Any,
) -> None:
    sim, clock = charging()
    limit(sim, 3_000.0)
    store = StationStore(tmp_path, SID)
    store.save(sim.checkpoint())
    stricter = descriptor()
    stricter = replace(
        stricter, evses=tuple(replace(e, min_power_w=4_140.0) for e in stricter.evses)
    )
    again = StationSimulator(stricter, clock=clock, seed=1, snapshot=store.load())
    out = run(again, clock, 10)
    assert statuses(out) == [S.SUSPENDED_EVSE]
    assert meters(out) == []


# --------------------------------------------------------------------------- property

MAX_W = st.sampled_from([3_700.0, 7_400.0, 11_000.0, 22_000.0, 50_000.0, 150_000.0])


@st.composite
def specs(draw: st.DrawFn) -> EvseSpec:
    max_w = draw(MAX_W)
    min_w = draw(st.sampled_from([0.0, 1_380.0, 4_140.0, max_w]))
    connector = "CCS" if max_w >= 50_000 else "Type2"
    descriptor = EvseDescriptor(
        id=EvseId("1"), connector=connector, max_power_w=max_w, min_power_w=min(min_w, max_w)
    )
    return EvseSpec(descriptor=descriptor, rng_key=str(draw(st.integers(0, 1_000))))


limits = (
    st.floats(0, 60_000, allow_nan=False)
    | st.integers(0, 60_000).map(lambda w: w + 0.75)  # rounds up on the wire if not floored
    | st.sampled_from([0.0, 1_379.0, 1_380.0, 4_140.0])
)
set_limits = st.tuples(
    st.just("limit"),
    limits,
    st.integers(-10, 900),  # seconds until it lapses
    st.none() | limits,
)
advances = st.tuples(st.just("advance"), st.floats(0.1, 900, allow_nan=False))
steps = st.lists(
    st.one_of(
        set_limits,
        advances,
        set_limits,
        advances,
        st.tuples(st.just("start"), st.none() | st.floats(20, 100)),
        st.tuples(st.just("stop")),
    ),
    min_size=1,
    max_size=30,
).map(lambda script: [("start", None), *script])  # most scripts charge for a while


class LimitModel:
    """The limit in force as the test computes it from the commands sent, independently of
    the EVSE's state: the last ``set_limit``, lapsing to its fallback or the minimum."""

    def __init__(self, spec: EvseSpec) -> None:
        self.spec = spec
        self.last: SetLimitArgs | None = None

    def limit(self, t: float) -> float | None:
        """The limit in force at ``t`` (``None``: never limited)."""
        if self.last is None:
            return None
        if t * 1000.0 >= self.last.expires_at:
            fallback = self.last.fallback_w
            return self.spec.descriptor.min_power_w if fallback is None else fallback
        return self.last.limit_w

    def at(self, t: float) -> float:
        """The most the EVSE may draw at ``t``: its limit, and never above its maximum."""
        limit = self.limit(t)
        top = self.spec.descriptor.max_power_w
        return top if limit is None else min(top, limit)

    def withheld(self, t: float) -> bool:
        """The limit at ``t`` is too low to charge (below the minimum, or under 1 W)."""
        limit = self.limit(t)
        return limit is not None and limit < max(1.0, self.spec.descriptor.min_power_w)


def check_meters(
    model: LimitModel,
    spec: EvseSpec,
    before: EvseState,
    events: tuple[EvseEvent, ...],
    *,
    on_the_beat: bool,
) -> None:
    """Every sample is metered under the limit in force at its scheduled time: the beat of the
    meter interval (``on_the_beat``: samples of :func:`evse.advance`; one cut short by the end
    of the session keeps its beat), else its own time (the sample a ``stop`` takes)."""
    metered_to = before.last_sample_at
    for event in events:
        if event.kind is EventKind.METER:
            scheduled = event.at
            if on_the_beat and metered_to is not None:
                scheduled = metered_to + spec.meter_interval
                assert event.at <= scheduled
            power = event.state.info().power_w
            assert power <= model.at(scheduled), (power, model.at(scheduled), event.at)
            assert power <= spec.descriptor.max_power_w
        metered_to = event.state.last_sample_at


@settings(max_examples=150, deadline=None)
@given(spec=specs(), script=steps)
def test_the_power_never_exceeds_the_limit_in_force_nor_the_evse_maximum(
    spec: EvseSpec, script: list[tuple[Any, ...]]
) -> None:
    now = 1_700_000_000.0
    state = EvseState(evse_id=spec.evse_id)
    model = LimitModel(spec)
    sessions = 0
    for step in script:
        before = state
        match step:
            case ("limit", limit_w, lasts_s, fallback_w):
                args = SetLimitArgs(
                    limit_w=limit_w,
                    expires_at=int(now * 1000) + lasts_s * 1000,
                    fallback_w=fallback_w,
                )
                outcome = evse.apply(spec, state, args, now)
                assert outcome.reason is None, "set_limit is accepted in every status"
                model.last = args
            case ("advance", seconds):
                now += seconds
                outcome = evse.advance(spec, state, now)
            case ("start", target):
                sessions += 1
                start = StartArgs(session_id=SessionId(f"s-{sessions}"), target_soc=target)
                outcome = evse.apply(spec, state, start, now)
            case ("stop",):
                outcome = evse.apply(spec, state, StopArgs(), now)
        on_the_beat = step[0] == "advance"
        check_meters(model, spec, before, outcome.events, on_the_beat=on_the_beat)
        state = outcome.state
        if state.status in (S.CHARGING, S.SUSPENDED_EVSE):
            assert (state.status is S.SUSPENDED_EVSE) == model.withheld(now), (state, now)
        if state.status is S.SUSPENDED_EVSE:
            assert state.power_w == 0.0


# --------------------------------------------------------------------------- over MQTT


@pytest.mark.timeout(60)
def test_a_station_on_mosquitto_accepts_a_limit_and_its_next_meter_value_respects_it(
    mosquitto_url: str, mqtt_client: Any
) -> None:
    from simulator.mqtt_station import BrokerAddress, MqttStation

    csms = mqtt_client(mosquitto_url)
    csms.subscribe(all_station_topics_filter(SID))
    clock = ManualClock(time.time())
    station_ = MqttStation(
        StationSimulator(descriptor(), clock=clock, seed=1), BrokerAddress.from_url(mosquitto_url)
    )
    station_.start()
    try:
        assert station_.wait_connected(10)
        wait_for(csms, lambda m: isinstance(m, StationBirth))  # its subscription is in place

        def ask(name: str, **args: Any) -> CommandReply:
            request = command(name, sent=clock.now(), **args)
            topic, payload, _ = encode(request)
            csms.publish(topic, payload, qos=1)
            answer = wait_for(csms, lambda m: isinstance(m, CommandReply) and m.id == request.id)
            assert isinstance(answer, CommandReply)
            return answer

        assert ask("start", session_id="s-1").accepted
        station_.tick(clock.advance(5))
        station_.tick(clock.advance(5))
        first = wait_for(csms, lambda m: isinstance(m, MeterValues))
        assert isinstance(first, MeterValues)
        assert first.power_w == 22_000.0

        expires_at = int(clock.now() * 1000) + 300_000
        answer = ask("set_limit", limit_w=7_400, expires_at=expires_at)
        assert answer.accepted
        assert answer.info is not None
        assert answer.info.status is S.CHARGING

        station_.tick(clock.advance(5))
        sample = wait_for(csms, lambda m: isinstance(m, MeterValues))
        assert isinstance(sample, MeterValues)
        assert sample.power_w == 7_400.0
        assert sample.seq > first.seq
    finally:
        station_.stop()


def wait_for(csms: Any, wanted: Any) -> Message:
    """The next message the CSMS client receives that ``wanted`` accepts (10 s at most each)."""
    while True:
        received = csms.get(timeout=10)
        message = parse(received.topic, received.payload)
        if wanted(message):
            return message
