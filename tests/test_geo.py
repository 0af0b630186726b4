"""actors.geo and FleetView.nearest: the index answers exactly what a full scan answers."""

from __future__ import annotations

import math
import random
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.evse_state import EvseState
from actors.fleet_view import FleetView
from actors.geo import EARTH_RADIUS_KM, GeoIndex, haversine_km
from protocol import (
    EvseDescriptor,
    EvseId,
    EvseStatus,
    StationDescriptor,
    StationId,
    evse_key,
)

STATUSES = list(EvseStatus)
Answer = list[tuple[float, EvseId, StationId]]


# ---------------------------------------------------------------------- haversine


@pytest.mark.parametrize(
    ("a", "b", "km", "tolerance"),
    [
        ((44.4949, 11.3426), (45.4642, 9.1900), 200.9, 1.0),  # Bologna - Milan
        ((41.9028, 12.4964), (45.4642, 9.1900), 477.0, 2.0),  # Rome - Milan
        ((51.5007, -0.1246), (40.6892, -74.0445), 5575.0, 10.0),  # London - New York
        ((0.0, 0.0), (0.0, 1.0), 2 * math.pi * EARTH_RADIUS_KM / 360, 1e-9),
        ((0.0, 179.5), (0.0, -179.5), 2 * math.pi * EARTH_RADIUS_KM / 360, 1e-9),
        ((0.0, 0.0), (0.0, 180.0), math.pi * EARTH_RADIUS_KM, 1e-6),
        ((90.0, 0.0), (-90.0, 0.0), math.pi * EARTH_RADIUS_KM, 1e-6),
        ((89.9, 0.0), (89.9, 180.0), 0.2 * math.pi * EARTH_RADIUS_KM / 180, 1e-6),
        ((90.0, 10.0), (90.0, -170.0), 0.0, 1e-9),
        ((45.0, 9.0), (45.0, 9.0), 0.0, 0.0),
    ],
)
def test_haversine_known_distances(
    a: tuple[float, float], b: tuple[float, float], km: float, tolerance: float
) -> None:
    assert haversine_km(*a, *b) == pytest.approx(km, abs=tolerance)
    assert haversine_km(*b, *a) == pytest.approx(km, abs=tolerance)


# ---------------------------------------------------------------------- full-scan reference


def brute_force(
    view: FleetView, lat: float, lon: float, limit: int, available_only: bool
) -> Answer:
    """The gateway's original algorithm: every EVSE of every station, sorted."""
    candidates = []
    for station in view.stations():
        distance = haversine_km(lat, lon, station.station.lat, station.station.lon)
        for evse in station.evses:
            if available_only and (
                evse.state.status is not EvseStatus.AVAILABLE
                or view.reservation(evse.state.evse_id) is not None
            ):
                continue
            candidates.append((distance, evse.state.evse_id, station.station.id))
    candidates.sort(key=lambda c: (c[0], c[1]))
    return candidates[:limit]


def indexed(view: FleetView, lat: float, lon: float, limit: int, available_only: bool) -> Answer:
    return [
        (distance, evse.state.evse_id, station.station.id)
        for distance, station, evse in view.nearest(lat, lon, limit, available_only)
    ]


def assert_same(view: FleetView, lat: float, lon: float, limit: int, available_only: bool) -> None:
    got = indexed(view, lat, lon, limit, available_only)
    want = brute_force(view, lat, lon, limit, available_only)
    assert [g[1:] for g in got] == [w[1:] for w in want], (lat, lon, limit, available_only)
    for g, w in zip(got, want, strict=True):
        assert abs(g[0] - w[0]) <= 1e-9


def station(sid: str, lat: float, lon: float, n_evses: int) -> StationDescriptor:
    evses = tuple(EvseDescriptor(id=EvseId(f"{sid}-e{j}")) for j in range(n_evses))
    return StationDescriptor(id=StationId(sid), name=sid, lat=lat, lon=lon, evses=evses)


def put_evses(
    view: FleetView, desc: StationDescriptor, rng: random.Random, p_missing: float = 0.1
) -> None:
    for e in desc.evses:
        if rng.random() < p_missing:
            continue  # described but never reported: not in the read model yet
        status = EvseStatus.AVAILABLE if rng.random() < 0.6 else rng.choice(STATUSES)
        key = evse_key(desc.id, e.id)
        view.put_evse(EvseState(station_id=desc.id, descriptor=e, status=status))
        view.put_reservation(key, 1 if rng.random() < 0.1 else None)


# ---------------------------------------------------------------------- property test

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
positions = st.one_of(
    st.tuples(lats, lons),
    st.tuples(lats, st.one_of(st.floats(-180, -179), st.floats(179, 180))),  # antimeridian
    st.tuples(st.one_of(st.floats(-90, -89), st.floats(89, 90)), lons),  # poles
    st.tuples(st.floats(44, 44.2), st.floats(11, 11.3)),  # a dense town
    st.sampled_from([(90.0, 0.0), (-90.0, 45.0), (0.0, 180.0), (0.0, -180.0), (44.1, 11.1)]),
)
queries = st.lists(st.tuples(positions, st.integers(1, 25), st.booleans()), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    places=st.lists(positions, max_size=60),
    duplicates=st.lists(st.integers(0, 59), max_size=10),
    moves=st.lists(st.tuples(st.integers(0, 59), positions), max_size=5),
    queries=queries,
    seed=st.integers(0, 2**32 - 1),
)
def test_nearest_matches_full_scan(
    places: list[tuple[float, float]],
    duplicates: list[int],
    moves: list[tuple[int, tuple[float, float]]],
    queries: list[tuple[tuple[float, float], int, bool]],
    seed: int,
) -> None:
    rng = random.Random(seed)
    places = places + [places[i % len(places)] for i in duplicates if places]
    view = FleetView(clock=lambda: 0.0)
    descs = [station(f"s{i}", lat, lon, rng.randint(1, 3)) for i, (lat, lon) in enumerate(places)]
    for desc in descs:
        view.put_station(desc, online=rng.random() < 0.9)
        put_evses(view, desc, rng)
    for (lat, lon), limit, available in queries:
        assert_same(view, lat, lon, limit, available)
    for i, (lat, lon) in moves:  # after the index exists: moved stations go to the overflow
        if descs:
            old = descs[i % len(descs)]
            view.put_station(station(old.id, lat, lon, len(old.evses)), online=True)
    for (lat, lon), limit, available in queries:
        assert_same(view, lat, lon, limit, available)


# ---------------------------------------------------------------------- larger, incremental


def test_incremental_growth_moves_and_rebuilds() -> None:
    """Stations arrive in batches between queries (overflow, then rebuilds) and some move."""
    rng = random.Random(7)
    view = FleetView(clock=lambda: 0.0)
    descs: list[StationDescriptor] = []
    for batch in range(12):
        for _ in range(rng.choice([1, 5, 40, 400])):
            i = len(descs)
            desc = station(f"st{i:05d}", rng.uniform(36.5, 47.0), rng.uniform(6.6, 18.5), 2)
            descs.append(desc)
            view.put_station(desc, online=True)
            put_evses(view, desc, rng, p_missing=0.0)
        for _ in range(batch * 3):
            old = rng.choice(descs)
            view.put_station(station(old.id, rng.uniform(36.5, 47.0), old.lon, 2), online=True)
        for _ in range(30):
            lat, lon = rng.uniform(35, 48), rng.uniform(5, 20)
            assert_same(view, lat, lon, rng.choice([1, 10, 50]), rng.random() < 0.7)
        # availability changes never touch the index but always show in the answers
        for _ in range(200):
            desc = rng.choice(descs)
            put_evses(view, desc, rng, p_missing=0.0)
        assert_same(view, 41.9, 12.5, 10, True)


def test_ties_are_broken_by_evse_id() -> None:
    view = FleetView(clock=lambda: 0.0)
    rng = random.Random(3)
    for i in range(50):
        desc = station(f"t{(i * 37) % 50}", 44.5, 11.3, 3)  # all in the same place
        view.put_station(desc, online=True)
        put_evses(view, desc, rng, p_missing=0.0)
    for limit in (1, 7, 30, 200):
        assert_same(view, 44.6, 11.4, limit, False)
        assert_same(view, 44.5, 11.3, limit, True)


def test_empty_fleet_and_zero_limit() -> None:
    view = FleetView()
    assert view.nearest(0.0, 0.0, 10, False) == []
    desc = station("a", 1.0, 1.0, 1)
    view.put_station(desc, online=True)
    assert view.nearest(0.0, 0.0, 10, False) == []  # described EVSE never reported
    view.put_evse(EvseState(station_id=desc.id, descriptor=desc.evses[0]))
    assert [e.state.evse_id for _, _, e in view.nearest(0.0, 0.0, 10, False)] == ["a.a-e0"]
    assert view.nearest(0.0, 0.0, 10, True) == []  # Offline
    assert view.nearest(0.0, 0.0, 0, False) == []


def test_index_is_copy_on_write() -> None:
    base = GeoIndex({"a": (0.0, 0.0), "b": (10.0, 10.0)})
    moved = base.updated({"a": (20.0, 20.0), "c": (0.0, 0.1)})
    assert [k for _, k in base.walk(0.0, 0.0)] == ["a", "b"]
    assert [k for _, k in moved.walk(0.0, 0.0)] == ["c", "b", "a"]
    assert base.updated({"a": (0.0, 0.0)}) is base


def test_concurrent_readers_and_writer() -> None:
    """Gateway threads query while the supervisor adds stations and flips statuses."""
    view = FleetView(clock=lambda: 0.0)
    rng = random.Random(11)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                found = view.nearest(44.0, 11.0, 10, True)
                keys = [(d, e.state.evse_id) for d, _, e in found]
                assert keys == sorted(keys)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for i in range(2000):
            desc = station(f"c{i}", rng.uniform(43, 45), rng.uniform(10, 12), 2)
            view.put_station(desc, online=True)
            put_evses(view, desc, rng, p_missing=0.0)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[0]
    assert_same(view, 44.0, 11.0, 10, True)
