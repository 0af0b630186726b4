"""Great-circle distance and an immutable spatial index of stations.

The index is a k-d tree over the stations' positions as 3-D points on the unit sphere, not
over (lat, lon): the chord between two unit vectors grows monotonically with the
great-circle distance, so there is no seam at the antimeridian and no singularity at the
poles, and the distance from a query to a node's bounding box is an exact lower bound
(converted back to km) on the distance to anything inside it. Sparse areas (sea, borders)
cost no more than dense ones, unlike a fixed-size cell grid.

A query walks the tree best-first (a heap of nodes keyed by their lower bound and of
stations keyed by their :func:`haversine_km`), so stations come out in non-decreasing
distance and the caller can stop as soon as it has what it needs; EVSE availability, which
changes all the time, is therefore checked at query time, never baked into the index.

A :class:`GeoIndex` never changes once built. :meth:`GeoIndex.updated` returns a new index
(copy-on-write): added or moved stations go to a small overflow that is scanned linearly,
and the tree is rebuilt once the overflow grows past :data:`OVERFLOW_LIMIT` (or 1/64 of the
index), so a burst of station births costs neither the writer nor the readers much.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import count
from operator import itemgetter
from typing import TypeVar

__all__ = ["EARTH_RADIUS_KM", "OVERFLOW_LIMIT", "GeoIndex", "Position", "haversine_km", "nearest"]

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), the one the gateway has always used."""

LEAF_SIZE = 8
_AXIS_KEYS = (itemgetter(3), itemgetter(4), itemgetter(5))
OVERFLOW_LIMIT = 512
"""Most stations kept outside the tree before :meth:`GeoIndex.updated` rebuilds it."""

_SLACK_KM = 0.01
"""Subtracted from every node's lower bound: far more than the rounding error of the bound
and of :func:`haversine_km` (about 1e-4 km at worst, next to the antipode), so a station
still inside an unvisited node is always *strictly* farther than any station already yielded.
"""

T = TypeVar("T")

Position = tuple[float, float]
_Point = tuple[str, float, float, float, float, float]
"""``(key, lat, lon, x, y, z)``."""
_Node = tuple[
    float, float, float, float, float, float, "tuple[_Node, _Node] | None", tuple[_Point, ...]
]
"""``(min x, max x, min y, max y, min z, max z, children, points)``: a leaf has no children."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees.

    Bit-for-bit the formula the gateway's full scan uses, so results can be compared exactly.
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    p, lam = math.radians(lat), math.radians(lon)
    c = math.cos(p)
    return c * math.cos(lam), c * math.sin(lam), math.sin(p)


def _point(key: str, lat: float, lon: float) -> _Point:
    return (key, lat, lon, *_unit(lat, lon))


def _build(points: list[_Point]) -> _Node:
    if len(points) <= LEAF_SIZE:
        xs = [p[3] for p in points]
        ys = [p[4] for p in points]
        zs = [p[5] for p in points]
        return (min(xs), max(xs), min(ys), max(ys), min(zs), max(zs), None, tuple(points))
    # Split on the widest axis, judged from a sample (any axis keeps the tree correct).
    sample = points[:: max(1, len(points) // 64)]
    spans = [max(map(key, sample)) - min(map(key, sample)) for key in _AXIS_KEYS]
    points.sort(key=_AXIS_KEYS[spans.index(max(spans))])
    half = len(points) // 2
    left, right = _build(points[:half]), _build(points[half:])
    return (
        min(left[0], right[0]),
        max(left[1], right[1]),
        min(left[2], right[2]),
        max(left[3], right[3]),
        min(left[4], right[4]),
        max(left[5], right[5]),
        (left, right),
        (),
    )


def _bound_km(node: _Node, x: float, y: float, z: float) -> float:
    """A lower bound (minus the slack) on the distance from ``(x, y, z)`` to ``node``'s points."""
    dx = node[0] - x if x < node[0] else (x - node[1] if x > node[1] else 0.0)
    dy = node[2] - y if y < node[2] else (y - node[3] if y > node[3] else 0.0)
    dz = node[4] - z if z < node[4] else (z - node[5] if z > node[5] else 0.0)
    chord = math.sqrt(dx * dx + dy * dy + dz * dz)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2)) - _SLACK_KM


class GeoIndex:
    """Immutable: station key -> position, answering "stations by distance from here"."""

    __slots__ = ("_overflow", "_positions", "_root")

    def __init__(self, positions: Mapping[str, Position] | None = None) -> None:
        self._positions: dict[str, Position] = dict(positions or {})
        points = [_point(key, lat, lon) for key, (lat, lon) in self._positions.items()]
        self._root: _Node | None = _build(points) if points else None
        self._overflow: dict[str, Position] = {}

    def __len__(self) -> int:
        return len(self._positions)

    def position(self, key: str) -> Position | None:
        return self._positions.get(key)

    def updated(self, changes: Mapping[str, Position]) -> GeoIndex:
        """A new index with ``changes`` (new or moved stations) applied; ``self`` is untouched."""
        changes = {k: p for k, p in changes.items() if self._positions.get(k) != p}
        if not changes:
            return self
        positions = {**self._positions, **changes}
        overflow = {**self._overflow, **changes}
        if len(overflow) > min(OVERFLOW_LIMIT, max(64, len(positions) // 64)):
            return GeoIndex(positions)
        new = GeoIndex.__new__(GeoIndex)
        new._positions, new._root, new._overflow = positions, self._root, overflow
        return new

    def walk(self, lat: float, lon: float) -> Iterator[tuple[float, str]]:
        """Every station as ``(haversine_km from (lat, lon), key)``, nearest first.

        Distances never decrease; a lazy generator, so stopping early costs nothing more.
        """
        x, y, z = _unit(lat, lon)
        tick = count()
        heap: list[tuple[float, int, _Node | None, str]] = []
        if self._root is not None:
            heap.append((_bound_km(self._root, x, y, z), next(tick), self._root, ""))
        overflow = self._overflow
        for key, (plat, plon) in overflow.items():
            heap.append((haversine_km(lat, lon, plat, plon), next(tick), None, key))
        heapq.heapify(heap)
        push, pop = heapq.heappush, heapq.heappop
        while heap:
            distance, _, node, key = pop(heap)
            if node is None:
                yield distance, key
            elif node[6] is not None:
                for child in node[6]:
                    push(heap, (_bound_km(child, x, y, z), next(tick), child, ""))
            else:
                for point in node[7]:
                    if overflow and point[0] in overflow:
                        continue  # moved since the tree was built: the overflow has it
                    d = haversine_km(lat, lon, point[1], point[2])
                    push(heap, (d, next(tick), None, point[0]))


def nearest(
    index: GeoIndex,
    lat: float,
    lon: float,
    limit: int,
    accept: Callable[[str], Iterable[tuple[str, T]]],
) -> list[tuple[float, T]]:
    """The ``limit`` nearest accepted items, as ``(distance_km, item)``.

    ``accept(station_key)`` yields the station's items that qualify *now*, as
    ``(item_id, item)``. The answer is exactly what a full scan would give when sorting
    every accepted item by ``(distance, item_id)`` and, for equal pairs, by station key and
    then by the order ``accept`` yielded them.
    """
    if limit <= 0:
        return []
    found: list[tuple[float, str, str, int, T]] = []
    kth = math.inf
    for distance, key in index.walk(lat, lon):
        if distance > kth:
            break
        for position, (item_id, item) in enumerate(accept(key)):
            found.append((distance, item_id, key, position, item))
        if len(found) >= limit:
            # Stations come nearest first, so the limit-th item found is the limit-th nearest;
            # keep walking only for stations at exactly that distance (ties by item id).
            kth = found[limit - 1][0]
    found.sort(key=lambda f: f[:4])
    return [(f[0], f[4]) for f in found[:limit]]
