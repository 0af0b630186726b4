"""Which stations a fleet runs: generated from a seed, or read from a JSON file.

Generated fleets are deterministic: the same ``seed`` gives the same names,
positions (uniform over a disc of ``radius_km`` around the centre) and EVSE
types (chosen per station, as real sites are all-AC or all-DC).

Config file format (``--config fleet.json``; see ``docs/fleet.example.json``)::

    {
      "stations": [
        {
          "id": "bo-centrale",              # station id: 1-64 of A-Z a-z 0-9 _ : - (no dot)
          "name": "Bologna Centrale",       # optional, defaults to the id
          "lat": 44.5058, "lon": 11.3426,   # degrees
          "evses": [
            {"id": "1", "max_power_w": 150000, "connector": "CCS"},
            {"id": "2", "max_power_w": 22000,   # connector defaults to Type2
             "min_power_w": 4140}               # optional: the least it charges at, W
          ]
        }
      ]
    }

Station ids must be unique across the file; EVSE ids are the station's own
(protocol version 2), unique within their station only: two stations may both
have EVSE ``1``, which the CSMS shows as ``bo-centrale.1`` and ``bo-maggiore.1``.
A station has 1 to 64 EVSEs. ``connector`` is free text; ``CCS``, ``CCS2`` and
``CHAdeMO`` are DC. ``min_power_w`` (0 to ``max_power_w``) is the least power the EVSE charges
at; a ``set_limit`` below it suspends charging (default 1380 W, 6 A on one phase, or
``max_power_w`` if lower).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from protocol import (
    EvseDescriptor,
    EvseId,
    StationDescriptor,
    StationId,
    valid_id,
    valid_station_id,
)

__all__ = [
    "DEFAULT_CENTRE",
    "EVSE_TYPES",
    "FleetConfigError",
    "generate_fleet",
    "load_fleet_config",
    "parse_centre",
    "parse_fleet_config",
]

DEFAULT_CENTRE: Final = (44.4949, 11.3426)  # Bologna, Piazza Maggiore
KM_PER_DEGREE: Final = 111.32
#: (max power W, connector, weight): 11/22 kW AC Type 2 and 50/150 kW DC CCS.
EVSE_TYPES: Final = (
    (11_000.0, "Type2", 35),
    (22_000.0, "Type2", 35),
    (50_000.0, "CCS", 20),
    (150_000.0, "CCS", 10),
)
SITE_KINDS: Final = (
    "Supermarket",
    "Park & Ride",
    "Hotel",
    "Office Park",
    "Mall",
    "Garage",
    "Stadium",
    "Hospital",
    "Station Square",
    "Depot",
)


class FleetConfigError(ValueError):
    """A fleet description that cannot be used (the message says where)."""


def generate_fleet(
    *,
    stations: int,
    evses_per_station: int,
    seed: int = 0,
    centre: tuple[float, float] = DEFAULT_CENTRE,
    radius_km: float = 3.0,
    prefix: str = "st",
) -> tuple[StationDescriptor, ...]:
    """``stations`` stations ``<prefix>-001``... with EVSEs ``1``, ``2``... each."""
    if not 1 <= evses_per_station <= 64 or stations < 1:
        raise FleetConfigError("need at least one station, and 1 to 64 EVSEs per station")
    rng = random.Random(f"fleet:{seed}")
    width = max(3, len(str(stations)))
    out = []
    for n in range(1, stations + 1):
        sid = f"{prefix}-{n:0{width}d}"
        if not valid_station_id(sid):
            raise FleetConfigError(f"{sid!r} is not a valid station id (check --station-prefix)")
        lat, lon = _position(rng, centre, radius_km)
        power, connector, _ = rng.choices(EVSE_TYPES, weights=[t[2] for t in EVSE_TYPES])[0]
        evses = tuple(
            EvseDescriptor(id=EvseId(str(k)), connector=connector, max_power_w=power)
            for k in range(1, evses_per_station + 1)
        )
        name = f"{rng.choice(SITE_KINDS)} {n:0{width}d}"
        out.append(StationDescriptor(id=StationId(sid), name=name, lat=lat, lon=lon, evses=evses))
    return tuple(out)


def _position(
    rng: random.Random, centre: tuple[float, float], radius_km: float
) -> tuple[float, float]:
    """Uniform over a disc (sqrt keeps the density flat), in degrees rounded to ~10 cm."""
    r = radius_km * math.sqrt(rng.random())
    theta = rng.uniform(0.0, 2.0 * math.pi)
    lat = centre[0] + r * math.cos(theta) / KM_PER_DEGREE
    lon = centre[1] + r * math.sin(theta) / (KM_PER_DEGREE * math.cos(math.radians(centre[0])))
    return round(lat, 6), round(lon, 6)


def parse_centre(text: str) -> tuple[float, float]:
    """``"44.4949,11.3426"`` -> ``(44.4949, 11.3426)``."""
    try:
        lat_text, lon_text = text.split(",")
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise FleetConfigError(f"expected LAT,LON, not {text!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise FleetConfigError(f"centre out of range: {text!r}")
    return lat, lon


def load_fleet_config(path: str | Path) -> tuple[StationDescriptor, ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FleetConfigError(f"cannot read {path}: {exc}") from None
    return parse_fleet_config(data)


def parse_fleet_config(data: Any) -> tuple[StationDescriptor, ...]:
    """Validate a decoded config document (format in the module docstring)."""
    if not isinstance(data, dict) or not isinstance(data.get("stations"), list):
        raise FleetConfigError("the config must be an object with a 'stations' list")
    if not data["stations"]:
        raise FleetConfigError("the config has no stations")
    stations = tuple(_station(raw, i) for i, raw in enumerate(data["stations"]))
    ids = [s.id for s in stations]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise FleetConfigError(f"duplicate station ids: {', '.join(duplicates)}")
    return stations


def _station(raw: Any, index: int) -> StationDescriptor:
    where = f"stations[{index}]"
    if not isinstance(raw, dict):
        raise FleetConfigError(f"{where} must be an object")
    sid = str(raw.get("id"))
    if not valid_station_id(raw.get("id")):
        raise FleetConfigError(f"{where}.id must be a station id of 1-64 of A-Z a-z 0-9 _ : -")
    evses = raw.get("evses")
    if not isinstance(evses, list) or not 1 <= len(evses) <= 64:
        raise FleetConfigError(f"{where}.evses must list 1 to 64 EVSEs")
    name = raw.get("name", sid)
    if not isinstance(name, str):
        raise FleetConfigError(f"{where}.name must be a string")
    descriptors = tuple(_evse(e, f"{where}.evses[{k}]") for k, e in enumerate(evses))
    evse_ids = [e.id for e in descriptors]
    duplicates = sorted({i for i in evse_ids if evse_ids.count(i) > 1})
    if duplicates:
        raise FleetConfigError(f"{where}: duplicate EVSE ids: {', '.join(duplicates)}")
    return StationDescriptor(
        id=StationId(sid),
        name=name[:120],
        lat=_number(raw.get("lat"), f"{where}.lat", -90, 90),
        lon=_number(raw.get("lon"), f"{where}.lon", -180, 180),
        evses=descriptors,
    )


def _evse(raw: Any, where: str) -> EvseDescriptor:
    if not isinstance(raw, dict):
        raise FleetConfigError(f"{where} must be an object")
    connector = raw.get("connector", "Type2")
    if not isinstance(connector, str) or not 1 <= len(connector) <= 32:
        raise FleetConfigError(f"{where}.connector must be a short string")
    max_power_w = _number(raw.get("max_power_w"), f"{where}.max_power_w", 1, 1e7)
    descriptor = EvseDescriptor(
        id=EvseId(_ident(raw.get("id"), f"{where}.id")),
        connector=connector,
        max_power_w=max_power_w,
    )
    if raw.get("min_power_w") is None:
        return descriptor
    min_power_w = _number(raw["min_power_w"], f"{where}.min_power_w", 0, max_power_w)
    return replace(descriptor, min_power_w=min_power_w)


def _ident(value: Any, where: str) -> str:
    if not valid_id(value):
        raise FleetConfigError(f"{where} must be an id of 1-64 of A-Z a-z 0-9 _ . : -")
    return str(value)


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FleetConfigError(f"{where} must be a number")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise FleetConfigError(f"{where} must be within [{lo}, {hi}]")
    return float(value)
