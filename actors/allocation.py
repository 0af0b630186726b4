"""How a site's power limit is shared between its EVSEs: one pure function, :func:`allocate`.

The rule (README, "Smart charging"; the property tests in ``tests/test_allocation.py`` check
it against a model of their own):

1. **Caps.** An EVSE never gets more than its maximum, nor more than it draws plus headroom:
   ``cap = min(max_w, measured_w + headroom)`` with ``headroom = max(HEADROOM_W, min_w)``
   (an EV drawing less than its share leaves the rest to the others; one that draws all of it
   may grow by the headroom at the next allocation). Before its first meter value an EVSE's
   cap is its maximum.
2. **Who charges.** When the limit covers every active EVSE's minimum, all of them charge.
   When it does not, EVSEs are taken in order of rounds waited (longest first, then by id)
   while their minimum still fits; the others are paused (limit 0, the station reports
   ``SuspendedEVSE``). The :class:`~actors.site.SiteActor` counts the rounds: every
   ``ROUND_S`` the paused ones have waited one more and the charging ones start again at 0,
   so the longest-waiting EVSE is always first and no EVSE waits more rounds than there are
   EVSEs.
3. **Shares.** Each charging EVSE gets its minimum; what is left is shared in proportion to
   a weight (water filling: nobody above their cap, the rest goes to the others). The
   weight is 1, or for a session whose driver set a departure time and target,
   ``1 + 3 * min(1, need_w / max_w)`` where ``need_w`` is the energy still needed divided by
   the hours left: a session that needs more energy per remaining hour gets up to 4 shares.
4. Whole watts, rounded down, so the sum never exceeds the limit; the same inputs give the
   same allocation. Minimums and maximums are taken as at least 1 W (a site validates
   ``0 < min_w <= max_w``).
5. **Few commands.** The water level of the EVSEs below their cap is a multiple of a step
   (:func:`quantum_w`: up to 100 W, never losing more than 4 % of the limit), so a session
   starting or ending among many moves nobody else's limit until the level crosses a step:
   one ``set_limit`` instead of one per EVSE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HEADROOM_W",
    "MAX_WEIGHT",
    "Demand",
    "allocate",
    "cap_of",
    "quantum_w",
    "weight_of",
]

HEADROOM_W: Final = 1_000.0
"""What an EVSE may get above what it draws (at least its minimum, see :func:`cap_of`)."""
MAX_WEIGHT: Final = 4.0
QUANTA_W: Final = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """One active EVSE (a session open on it) as the allocator sees it."""

    evse_id: str
    min_w: float
    max_w: float
    measured_w: float | None = None
    """What it draws now (last meter value); ``None`` before the first one."""
    waited: int = 0
    """Rounds it has waited paused (counted by the site actor)."""
    need_w: float | None = None
    """Energy still needed to reach the driver's target by the departure time, per hour
    left (W); ``None`` when the driver set no departure."""


def cap_of(demand: Demand) -> float:
    """The most ``demand`` may get: its maximum, or what it draws plus headroom."""
    top = max(demand.max_w, 1.0)
    lowest = min(max(demand.min_w, 1.0), top)
    if demand.measured_w is None:
        return top
    headroom = max(HEADROOM_W, lowest)
    return min(top, max(demand.measured_w, 0.0) + headroom)


def weight_of(demand: Demand) -> float:
    """1, or more for a session that needs more energy per remaining hour (rule 3)."""
    if demand.need_w is None or demand.max_w <= 0:
        return 1.0
    return 1.0 + (MAX_WEIGHT - 1.0) * min(1.0, max(demand.need_w, 0.0) / demand.max_w)


def allocate(limit_w: float, demands: Iterable[Demand]) -> dict[str, int]:
    """Watts per EVSE id (0: paused) for the active ``demands`` under ``limit_w``."""
    limit = max(float(limit_w), 0.0)
    items = sorted(demands, key=lambda d: (-d.waited, d.evse_id))
    # a minimum of at least 1 W: an EVSE that charges gets something (and a round counts it)
    mins = {d.evse_id: min(max(d.min_w, 1.0), max(d.max_w, 1.0)) for d in items}
    running: list[Demand] = []
    used = 0.0
    if sum(mins.values()) <= limit:
        running, used = items, sum(mins.values())
    else:
        for demand in items:
            need = mins[demand.evse_id]
            if used + need <= limit:
                running.append(demand)
                used += need
    shares = _fill(limit - used, running, mins, limit)
    out = {d.evse_id: 0 for d in items}
    for demand in running:
        out[demand.evse_id] = int(mins[demand.evse_id] + shares[demand.evse_id])
    return out


def quantum_w(limit_w: float, total_weight: float) -> float:
    """The step of the water level (rule 5): the largest of 1, 2, 5, 10, 20, 50, 100 W per
    unit of weight that loses at most 4 % of the limit over the weights sharing it."""
    budget = 0.04 * limit_w / max(total_weight, 1.0)
    return max((q for q in QUANTA_W if q <= budget), default=0.0)


def _fill(
    spare: float, running: Sequence[Demand], mins: Mapping[str, float], limit: float
) -> dict[str, float]:
    """Water filling: ``spare`` shared by weight, nobody above ``cap - min``; the level of
    those below their cap goes down to a multiple of :func:`quantum_w`."""
    shares = {d.evse_id: 0.0 for d in running}
    room = {d.evse_id: max(cap_of(d) - mins[d.evse_id], 0.0) for d in running}
    weights = {d.evse_id: weight_of(d) for d in running}
    quantum = quantum_w(limit, sum(weights.values()))
    # the ones that fill up first are those with the least room per weight
    order = sorted(running, key=lambda d: (room[d.evse_id] / weights[d.evse_id], d.evse_id))
    total_weight = sum(weights.values())
    for index, demand in enumerate(order):
        if spare <= 0 or total_weight <= 0:
            break
        key = demand.evse_id
        level = spare / total_weight  # per unit of weight, if nobody else filled up
        if room[key] <= level * weights[key]:
            shares[key] = room[key]
            spare -= room[key]
            total_weight -= weights[key]
            continue
        if quantum > 0:
            level = level // quantum * quantum
        for rest in order[index:]:  # nobody from here on fills up: all get the same level
            shares[rest.evse_id] = level * weights[rest.evse_id]
        break
    return shares
