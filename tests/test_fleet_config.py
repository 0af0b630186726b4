"""Fleet descriptions (generated or from JSON), the broker URL, and the launcher's edges."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from protocol import evse_key, valid_evse_key, valid_id, valid_station_id
from simulator import (
    DEFAULT_CENTRE,
    BrokerAddress,
    FleetConfigError,
    generate_fleet,
    load_fleet_config,
    parse_centre,
    parse_fleet_config,
)
from simulator.fleet import LaunchProgress, main
from simulator.fleet_config import EVSE_TYPES, KM_PER_DEGREE

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "fleet.example.json"


def test_generated_ids_follow_the_prefix_and_evse_ids_are_local_to_their_station() -> None:
    fleet = generate_fleet(stations=3, evses_per_station=2, seed=1)
    assert [s.id for s in fleet] == ["st-001", "st-002", "st-003"]
    assert all([e.id for e in s.evses] == ["1", "2"] for s in fleet)
    assert all(valid_station_id(s.id) for s in fleet)
    assert all(valid_id(e.id) for s in fleet for e in s.evses)
    keys = [evse_key(s.id, e.id) for s in fleet for e in s.evses]
    assert keys[:3] == ["st-001.1", "st-001.2", "st-002.1"]  # as the CSMS names them
    assert len(set(keys)) == len(keys)
    assert all(valid_evse_key(k) for k in keys)


def test_a_station_prefix_with_a_dot_is_refused() -> None:
    with pytest.raises(FleetConfigError, match="station id"):
        generate_fleet(stations=1, evses_per_station=1, prefix="st.x")


def test_a_generated_fleet_is_the_same_for_the_same_seed_only() -> None:
    fleet = generate_fleet(stations=20, evses_per_station=2, seed=5)
    assert generate_fleet(stations=20, evses_per_station=2, seed=5) == fleet
    assert generate_fleet(stations=20, evses_per_station=2, seed=6) != fleet


def test_generated_stations_sit_within_the_radius_with_realistic_evses() -> None:
    centre = (45.0, 9.0)
    fleet = generate_fleet(stations=200, evses_per_station=1, seed=2, centre=centre, radius_km=3)
    for s in fleet:
        dy = (s.lat - centre[0]) * KM_PER_DEGREE
        dx = (s.lon - centre[1]) * KM_PER_DEGREE * math.cos(math.radians(centre[0]))
        assert math.hypot(dx, dy) <= 3.001
    kinds = {(e.max_power_w, e.connector) for s in fleet for e in s.evses}
    assert kinds == {(power, connector) for power, connector, _ in EVSE_TYPES}
    assert len({s.name for s in fleet}) == len(fleet)


def test_the_default_centre_is_bologna() -> None:
    assert DEFAULT_CENTRE == (44.4949, 11.3426)
    assert parse_centre("44.4949,11.3426") == DEFAULT_CENTRE


@pytest.mark.parametrize("text", ["44.4", "a,b", "91,0", "0,181"])
def test_a_bad_centre_is_refused(text: str) -> None:
    with pytest.raises(FleetConfigError):
        parse_centre(text)


def test_the_shipped_example_config_parses() -> None:
    fleet = load_fleet_config(EXAMPLE)
    assert [s.id for s in fleet] == ["bo-centrale", "bo-maggiore"]
    assert fleet[1].evses[2].connector == "Type2"  # the default
    assert fleet[0].evses[0].max_power_w == 150_000.0
    assert [e.id for e in fleet[1].evses] == ["1", "2", "3"]


def test_two_stations_may_both_have_evse_1_and_2() -> None:
    evses = [{"id": "1", "max_power_w": 11000}, {"id": "2", "max_power_w": 11000}]
    base = {"lat": 1.0, "lon": 2.0, "evses": evses}
    fleet = parse_fleet_config({"stations": [{"id": "a", **base}, {"id": "b", **base}]})
    assert [[e.id for e in s.evses] for s in fleet] == [["1", "2"], ["1", "2"]]


def _config(**station: Any) -> dict[str, Any]:
    base = {"id": "a", "lat": 1.0, "lon": 2.0, "evses": [{"id": "1", "max_power_w": 11000}]}
    return {"stations": [base | station]}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"stations": []},
        _config(id="bad id"),
        _config(id="a.b"),  # a dot would make "a.b.1" ambiguous
        _config(lat=91),
        _config(lon="2"),
        _config(evses=[]),
        _config(evses=[{"id": "1"}]),
        _config(evses=[{"id": "1", "max_power_w": True}]),
        _config(evses=[{"id": "1", "max_power_w": 1, "connector": 3}]),
        _config(evses=[{"id": "1", "max_power_w": 11000}, {"id": "1", "max_power_w": 22000}]),
        _config(evses=[{"id": "a/1", "max_power_w": 11000}]),
        _config(evses=[{"id": "1", "max_power_w": 11000, "min_power_w": 11001}]),
        _config(evses=[{"id": "1", "max_power_w": 11000, "min_power_w": -1}]),
        _config(evses=[{"id": "1", "max_power_w": 11000, "min_power_w": "4140"}]),
        {"stations": [_config()["stations"][0], _config()["stations"][0]]},
    ],
)
def test_a_bad_config_is_refused_with_a_config_error(data: Any) -> None:
    with pytest.raises(FleetConfigError):
        parse_fleet_config(data)


def test_an_evse_may_name_its_minimum_power_else_it_gets_the_default() -> None:
    evses = [
        {"id": "1", "max_power_w": 22000, "min_power_w": 4140},
        {"id": "2", "max_power_w": 22000},
        {"id": "3", "max_power_w": 1000},
    ]
    (station,) = parse_fleet_config(_config(evses=evses))
    assert [e.min_power_w for e in station.evses] == [4140.0, 1380.0, 1000.0]


def test_a_config_without_names_uses_the_ids() -> None:
    assert parse_fleet_config(_config())[0].name == "a"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost:1883", BrokerAddress("localhost", 1883)),
        ("mqtt://10.0.0.5", BrokerAddress("10.0.0.5", 1883)),
        ("tcp://broker:2883", BrokerAddress("broker", 2883)),
    ],
)
def test_the_broker_url_is_parsed(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://x:1", "localhost:1883", "mqtt://"])
def test_a_bad_broker_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.from_url(url)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal() -> None:
    stream = _Tty()
    progress = LaunchProgress(20, stream)
    progress.update(12)
    assert stream.getvalue().endswith("launching stations [############--------] 12/20")


def test_progress_logs_once_per_tenth_elsewhere(caplog: pytest.LogCaptureFixture) -> None:
    progress = LaunchProgress(200, io.StringIO())
    with caplog.at_level(logging.INFO, logger="simulator.fleet"):
        for n in range(1, 201):
            progress.update(n)
    assert len(caplog.records) == 10


@pytest.mark.parametrize(
    "argv",
    [
        ["--mqtt-url", "http://nope"],
        ["--speed", "0"],
        ["--stations", "0"],
        ["--station-prefix", "bad prefix"],
    ],
)
def test_the_launcher_refuses_bad_arguments_before_connecting(
    argv: list[str], tmp_path: Path
) -> None:
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2


def test_the_launcher_refuses_a_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "fleet.json"
    config.write_text(json.dumps({"stations": "nope"}))
    assert main(["--config", str(config), "--data-dir", str(tmp_path)]) == 2
