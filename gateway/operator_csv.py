"""Sessions as CSV for spreadsheets: one header row, RFC 4180 quoting, and no formulas.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or
a carriage return) as a formula: an email such as ``=HYPERLINK(...)@x.org`` or an end reason a
station chose could then run on the operator's machine (CSV injection). Such text cells get a
leading ``'``, which spreadsheets show as plain text; numbers are written by us and never
start with one of these.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from storage import SessionRecord

__all__ = ["CSV_COLUMNS", "FORMULA_STARTS", "safe_cell", "sessions_csv"]

CSV_COLUMNS: Final = (
    "session_id",
    "station_id",
    "evse_id",
    "driver_email",
    "driver_id",
    "status",
    "started_at",
    "ended_at",
    "duration_s",
    "energy_kwh",
    "peak_power_kw",
    "target_soc",
    "end_reason",
)
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The cell's text: ``''`` for None, numbers as they are, text defused of formulas."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(record: SessionRecord) -> list[str]:
    s = record.session
    duration = None if s.ended_at is None else round((s.ended_at - s.started_at) / 1000)
    values = (
        s.id,
        s.station_id,
        s.evse_id,
        record.driver_email,
        s.driver_id,
        "open" if s.ended_at is None else "closed",
        _iso(s.started_at),
        _iso(s.ended_at),
        duration,
        round(s.energy_wh / 1000, 3),
        round(s.peak_power_w / 1000, 2),
        s.target_soc,
        s.end_reason,
    )
    return [safe_cell(v) for v in values]


def sessions_csv(records: Iterable[SessionRecord]) -> bytes:
    """UTF-8 CSV with a header row; lines end in CRLF as RFC 4180 says."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_row(r) for r in records)
    return out.getvalue().encode("utf-8")
