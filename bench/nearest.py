"""``python -m bench nearest``: nearest-EVSE query latency, index vs. full scan.

Fleets of 1,000 / 10,000 / 100,000 EVSEs (2 per station) spread over Italy: most stations
cluster around the big cities, the rest are scattered around them (seeded RNG, ~70 %
Available, a few reserved). Queries come mostly from where the stations are, some from
anywhere in Italy's bounding box (sea included: the far, harder queries). Each query asks
for the 10 nearest available EVSEs through :meth:`actors.fleet_view.FleetView.nearest`.

The baseline is the gateway's original algorithm (every EVSE of :meth:`FleetView.stations`,
great-circle distance, ``heapq.nsmallest``), timed in the same run on the same fleet and
queries; every baseline answer must equal the index's, or the benchmark fails.

The figure is the index's p99 (wall clock) at 100,000 EVSEs (target 2 ms); ratio = baseline
p99 / p99. ``cpu_p50``/``cpu_p99`` are the same queries' thread CPU time: on a loaded machine
(see ``machine.loadavg``) the wall clock's tail is mostly waiting for a core.
"""

from __future__ import annotations

import gc
import heapq
import random
import time
from functools import partial
from typing import Any, Final

from actors.evse_state import EvseState
from actors.fleet_view import EvseView, FleetView, StationView
from actors.geo import haversine_km
from bench.common import (
    BenchmarkError,
    Options,
    Result,
    benchmark,
    latency_result,
    ms,
    summary_ms,
    time_call_ns,
    timed,
    timed_cpu,
)
from protocol import EvseDescriptor, EvseId, EvseStatus, StationDescriptor, StationId

__all__ = ["build_fleet", "full_scan", "query_points", "run", "station_positions"]

NAME: Final = "nearest"
TARGET_MS: Final = 2.0
LIMIT: Final = 10
SIZES: Final = (1_000, 10_000, 100_000)
EVSES_PER_STATION: Final = 2
AVAILABLE_SHARE: Final = 0.7
RESERVED_SHARE: Final = 0.02
BBOX: Final = ((36.6, 47.1), (6.6, 18.5))  # Italy: (lat range, lon range)
#: (lat, lon, weight ~ metropolitan population in 100k)
CITIES: Final = (
    (41.9028, 12.4964, 43),  # Rome
    (45.4642, 9.1900, 43),  # Milan
    (40.8518, 14.2681, 30),  # Naples
    (45.0703, 7.6869, 22),  # Turin
    (38.1157, 13.3615, 12),  # Palermo
    (44.4056, 8.9463, 8),  # Genoa
    (44.4949, 11.3426, 10),  # Bologna
    (43.7696, 11.2558, 10),  # Florence
    (41.1171, 16.8719, 12),  # Bari
    (37.5079, 15.0830, 11),  # Catania
    (45.4408, 12.3155, 8),  # Venice
    (45.4384, 10.9916, 9),  # Verona
    (38.1938, 15.5540, 5),  # Messina
    (45.4064, 11.8768, 9),  # Padua
    (45.6495, 13.7768, 2),  # Trieste
    (45.5416, 10.2118, 12),  # Brescia
    (44.8015, 10.3279, 4),  # Parma
    (40.4637, 17.2470, 5),  # Taranto
    (43.7228, 10.4017, 4),  # Pisa
    (39.2238, 9.1217, 4),  # Cagliari
    (46.4983, 11.3548, 5),  # Bolzano
    (46.0748, 11.1217, 5),  # Trento
    (42.3498, 13.3995, 3),  # L'Aquila
    (43.6158, 13.5189, 4),  # Ancona
    (43.1107, 12.3908, 6),  # Perugia
    (40.6824, 14.7681, 10),  # Salerno
    (39.3088, 16.2502, 7),  # Cosenza
    (40.7259, 8.5557, 3),  # Sassari
)
KM_PER_DEGREE: Final = 111.32
OTHER_STATUSES: Final = tuple(s for s in EvseStatus if s is not EvseStatus.AVAILABLE)


def _around(rng: random.Random, sigma_km: float) -> tuple[float, float]:
    lat, lon, _ = rng.choices(CITIES, weights=[c[2] for c in CITIES])[0]
    lat += rng.gauss(0, sigma_km) / KM_PER_DEGREE
    lon += rng.gauss(0, sigma_km) / (KM_PER_DEGREE * 0.73)  # cos(43°)
    return min(max(lat, -90.0), 90.0), lon


def station_positions(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """65 % within ~10 km of a city (by population), 35 % spread ~40 km around one."""
    return [_around(rng, 10.0 if rng.random() < 0.65 else 40.0) for _ in range(n)]


def query_points(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """85 % where drivers are (like the stations), 15 % anywhere in the bounding box."""
    (lat0, lat1), (lon0, lon1) = BBOX
    return [
        _around(rng, 25.0)
        if rng.random() < 0.85
        else (rng.uniform(lat0, lat1), rng.uniform(lon0, lon1))
        for _ in range(n)
    ]


def build_fleet(rng: random.Random, n_evses: int) -> FleetView:
    view = FleetView(clock=lambda: 0.0)
    for i, (lat, lon) in enumerate(station_positions(rng, n_evses // EVSES_PER_STATION)):
        sid = StationId(f"st{i:06d}")
        evses = tuple(
            EvseDescriptor(id=EvseId(f"{sid}-{j}")) for j in range(1, EVSES_PER_STATION + 1)
        )
        view.put_station(
            StationDescriptor(id=sid, name=sid, lat=lat, lon=lon, evses=evses), online=True
        )
        for e in evses:
            available = rng.random() < AVAILABLE_SHARE
            status = EvseStatus.AVAILABLE if available else rng.choice(OTHER_STATUSES)
            state = EvseState(station_id=sid, descriptor=e, status=status)
            view.put_evse(state)
            if available and rng.random() < RESERVED_SHARE:
                view.put_reservation(state.evse_id, 1)
    return view


def full_scan(
    view: FleetView, lat: float, lon: float, limit: int, available_only: bool
) -> list[tuple[float, StationView, EvseView]]:
    """The gateway's original algorithm: every EVSE, then the ``limit`` smallest."""
    candidates = []
    for station in view.stations():
        distance = haversine_km(lat, lon, station.station.lat, station.station.lon)
        for evse in station.evses:
            if available_only and (
                evse.state.status is not EvseStatus.AVAILABLE
                or view.reservation(evse.state.evse_id) is not None
            ):
                continue
            candidates.append((distance, evse.state.evse_id, station, evse))
    best = heapq.nsmallest(limit, candidates, key=lambda c: (c[0], c[1]))
    return [(distance, station, evse) for distance, _, station, evse in best]


def _same(
    got: list[tuple[float, StationView, EvseView]],
    want: list[tuple[float, StationView, EvseView]],
) -> bool:
    return len(got) == len(want) and all(
        g[2].state.evse_id == w[2].state.evse_id
        and g[1].station.id == w[1].station.id
        and abs(g[0] - w[0]) <= 1e-9
        for g, w in zip(got, want, strict=True)
    )


def _measure_size(
    rng: random.Random, n_evses: int, n_index: int, n_baseline: int
) -> dict[str, Any]:
    start = time.perf_counter_ns()
    view = build_fleet(rng, n_evses)
    fill_ns = time.perf_counter_ns() - start
    build_ns = time_call_ns(lambda: view.nearest(45.0, 10.0, LIMIT, True))  # lazy index build
    queries = query_points(rng, n_index)
    gc.collect()
    index_ns, index_cpu_ns = [], []
    for lat, lon in queries:
        wall, cpu, _ = timed_cpu(partial(view.nearest, lat, lon, LIMIT, True))
        index_ns.append(wall)
        index_cpu_ns.append(cpu)
    baseline_ns = []
    for lat, lon in queries[:n_baseline]:
        elapsed, want = timed(partial(full_scan, view, lat, lon, LIMIT, True))
        baseline_ns.append(elapsed)
        got = view.nearest(lat, lon, LIMIT, True)
        if not _same(got, want):
            raise BenchmarkError(
                f"index and full scan disagree at ({lat}, {lon}) with {n_evses} EVSEs:\n"
                f"  index:     {[(round(d, 6), e.state.evse_id) for d, _, e in got]}\n"
                f"  full scan: {[(round(d, 6), e.state.evse_id) for d, _, e in want]}"
            )
    return {
        "stations": n_evses // EVSES_PER_STATION,
        "fill_ms": ms(fill_ns),
        "index_build_ms": ms(build_ns),
        "index": summary_ms(index_ns),
        "index_cpu": summary_ms(index_cpu_ns),
        "baseline": summary_ms(baseline_ns),
        "checked": len(baseline_ns),
    }


@benchmark(NAME, "nearest available EVSEs (limit 10) over 1k/10k/100k EVSEs: p99 ms")
def run(options: Options) -> Result:
    n_index = 2_000 if options.quick else 20_000
    # The full scan takes ~1 s per query at 100,000 EVSEs: fewer samples for bigger fleets.
    if options.quick:
        n_baseline = {1_000: 200, 10_000: 30, 100_000: 6}
    else:
        n_baseline = {1_000: 2_000, 10_000: 300, 100_000: 50}
    sizes = {}
    for n_evses in SIZES:
        rng = random.Random(f"{options.seed}-{n_evses}")
        sizes[str(n_evses)] = _measure_size(rng, n_evses, n_index, n_baseline[n_evses])
    largest = sizes[str(SIZES[-1])]
    return latency_result(
        NAME,
        p50_ms=float(largest["index"]["p50"]),
        p99_ms=float(largest["index"]["p99"]),
        baseline_ms=float(largest["baseline"]["p99"]),
        target_ms=TARGET_MS,
        details={
            "evses": SIZES[-1],
            "baseline_p50": largest["baseline"]["p50"],
            "cpu_p50": largest["index_cpu"]["p50"],
            "cpu_p99": largest["index_cpu"]["p99"],
            "sizes": sizes,
            "limit": LIMIT,
            "available_only": True,
            "quick": options.quick,
            "seed": options.seed,
        },
    )
