"""The OCPP translator's pure mapping functions (``gateway/ocpp_translate.py``)."""

from __future__ import annotations

import base64

import pytest

from gateway import ocpp_translate as tr
from protocol import (
    EvseId,
    EvseInfo,
    EvseStatus,
    SessionId,
    StationId,
    StopReason,
    encode,
    parse,
)


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_charge_point_ids_come_from_the_path_and_follow_the_station_id_syntax() -> None:
    assert tr.charge_point_id("/ocpp/CP-0042") == "CP-0042"
    assert tr.charge_point_id("/ocpp/CP-0042?x=1") == "CP-0042"
    for bad in ("/ocpp/", "/ocpp/a.b", "/ocpp/a/b", "/other/CP1", "/ocpp/a:b", "/ocpp/" + "x" * 65):
        assert tr.charge_point_id(bad) is None, bad


def test_basic_credentials_are_read_or_refused() -> None:
    assert tr.basic_credentials(_basic("cp-1:s3cret:with:colons")) == (
        "cp-1",
        "s3cret:with:colons",
    )
    assert tr.basic_credentials("basic " + _basic("a:b")[6:]) == ("a", "b")
    for bad in (None, "", "Bearer x", "Basic", "Basic !!!", _basic("no-colon"), "Basic /w=="):
        assert tr.basic_credentials(bad) is None, bad


def test_statuses_and_stop_reasons_map_to_ours() -> None:
    assert tr.evse_status("SuspendedEVSE") is EvseStatus.SUSPENDED_EVSE
    assert tr.evse_status("Offline") is None  # only the CSMS says Offline
    assert tr.evse_status("charging") is None
    assert tr.stop_reason("Remote") is StopReason.REMOTE
    assert tr.stop_reason("EVDisconnected") is StopReason.EV_DISCONNECTED
    assert tr.stop_reason(None) is StopReason.LOCAL  # OCPP 1.6: absent means Local
    assert tr.stop_reason("PowerLoss") is StopReason.OTHER


def test_meter_samples_take_totals_in_wh_and_w_and_skip_what_they_cannot_read() -> None:
    sample = tr.meter_sample(
        [
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "sampled_value": [
                    {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "2000", "measurand": "Power.Active.Import", "phase": "L1"},
                    {"value": "55", "measurand": "SoC", "unit": "Percent"},
                    {"value": "230", "measurand": "Voltage", "unit": "V"},
                ],
            }
        ]
    )
    assert sample == tr.MeterSample(energy_wh=12_500.0, power_w=7_400.0, soc=55.0)
    assert tr.meter_sample([{"sampled_value": [{"value": "321"}]}]).energy_wh == 321.0
    for bad in ("NaN", "inf", "-5", "twelve", "", "1e16"):
        assert tr.meter_sample([{"sampled_value": [{"value": bad}]}]) == tr.MeterSample()
    too_full = {"value": "101", "measurand": "SoC", "unit": "Percent"}
    assert tr.meter_sample([{"sampled_value": [too_full]}]) == tr.MeterSample()
    odd_unit = {"value": "1", "measurand": "Energy.Active.Import.Register", "unit": "varh"}
    assert tr.meter_sample([{"sampled_value": [odd_unit]}]) == tr.MeterSample()


def test_id_tags_fit_ocpp_16_and_differ_per_session() -> None:
    a, b = tr.id_tag_for("s" * 64), tr.id_tag_for("s" * 63 + "t")
    assert len(a) <= 20
    assert a != b
    assert a == tr.id_tag_for("s" * 64)


def test_the_birth_is_valid_protocol_v2_with_one_evse_per_connector() -> None:
    birth = tr.birth(StationId("cp-1"), "Depot", [2, 1], epoch=5, ts=1_700_000_000_000)
    again = parse(*encode(birth)[:2])
    assert again == birth
    assert [e.id for e in birth.station.evses] == ["1", "2"]


@pytest.mark.parametrize("status", [s for s in EvseStatus if s is not EvseStatus.OFFLINE])
def test_with_status_keeps_only_the_fields_that_status_allows(status: EvseStatus) -> None:
    busy = EvseInfo(
        evse_id=EvseId("1"),
        status=EvseStatus.CHARGING,
        session_id=SessionId("s-1"),
        session_energy_wh=500.0,
        power_w=7_000.0,
        energy_wh=10_000.0,
        reservation_id="r-1",
        stop_reason=StopReason.REMOTE,
    )
    info = tr.with_status(busy, status)
    assert info.status is status
    assert info.energy_wh == 10_000.0
    assert (info.session_id is not None) == (status in tr.IN_SESSION)
    assert (info.reservation_id is not None) == (status is EvseStatus.RESERVED)
    assert (info.stop_reason is not None) == (status is EvseStatus.FINISHING)
    assert info.maintenance == (status is EvseStatus.UNAVAILABLE)
