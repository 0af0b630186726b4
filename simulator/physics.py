"""Battery physics: how fast a car charges, and what kind of car turns up.

Good enough to look real on a dashboard, cheap enough for hundreds of EVSEs in
one process: constant power up to 80 % state of charge, then a linear taper down
to 10 % of the maximum at 100 % (the shape of real CC/CV charging curves),
integrated in one-second steps. Pure functions; randomness comes in as a seeded
:class:`random.Random` so every run is replayable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AC_ONBOARD_CHARGERS_W",
    "TAPER_START_SOC",
    "Car",
    "ChargeStep",
    "charge",
    "draw_car",
    "draw_unplug_delay",
    "is_dc",
    "power_at",
]

TAPER_START_SOC: Final = 80.0
TAPER_END_FRACTION: Final = 0.10
STEP_SECONDS: Final = 1.0
AC_ONBOARD_CHARGERS_W: Final = (7_400.0, 11_000.0, 22_000.0)
DC_CONNECTORS: Final = frozenset({"CCS", "CCS2", "CHAdeMO"})
UNPLUG_DELAY_S: Final = (10.0, 60.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Car:
    """The car plugged into an EVSE for one session."""

    capacity_wh: float
    max_power_w: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeStep:
    """What happened during one call to :func:`charge`."""

    energy_wh: float
    soc: float
    elapsed_s: float
    reached_target: bool

    @property
    def average_power_w(self) -> float:
        return self.energy_wh * 3600.0 / self.elapsed_s if self.elapsed_s > 0 else 0.0


def is_dc(connector: str) -> bool:
    return connector in DC_CONNECTORS


def draw_car(rng: random.Random, connector: str) -> tuple[Car, float]:
    """A car arriving at a ``connector``: its battery and max power, and its initial SoC (%)."""
    capacity_wh = round(rng.uniform(40_000.0, 100_000.0), -2)
    soc = round(rng.uniform(10.0, 60.0), 1)
    if is_dc(connector):
        max_power_w = round(rng.uniform(50_000.0, 250_000.0), -3)
    else:
        max_power_w = rng.choice(AC_ONBOARD_CHARGERS_W)
    return Car(capacity_wh=capacity_wh, max_power_w=max_power_w), soc


def draw_unplug_delay(rng: random.Random) -> float:
    """Simulated seconds between the end of a session and the driver unplugging."""
    return round(rng.uniform(*UNPLUG_DELAY_S), 1)


def power_at(soc: float, max_power_w: float) -> float:
    """Charging power (W) at a state of charge: flat to 80 %, linear taper to 10 % at 100 %."""
    if soc <= TAPER_START_SOC:
        return max_power_w
    over = min(soc, 100.0) - TAPER_START_SOC
    fraction = 1.0 - (1.0 - TAPER_END_FRACTION) * over / (100.0 - TAPER_START_SOC)
    return max_power_w * fraction


def charge(
    car: Car,
    soc: float,
    evse_max_w: float,
    seconds: float,
    target: float,
    limit_w: float | None = None,
) -> ChargeStep:
    """Charge for up to ``seconds``, stopping early when ``soc`` reaches ``target`` (%).

    The power is the least of the car's curve (tapering from the lower of the car's and the
    EVSE's maximum) and ``limit_w``, the EVSE's power limit (``None``: none)."""
    max_w = min(evse_max_w, car.max_power_w)
    cap = math.inf if limit_w is None else limit_w
    energy = elapsed = 0.0
    while elapsed < seconds and soc < target:
        h = min(STEP_SECONDS, seconds - elapsed)
        step_wh = min(power_at(soc, max_w), cap) * h / 3600.0
        if step_wh <= 0.0:  # a zero limit: nothing flows (the EVSE suspends before this)
            elapsed = seconds
            break
        room_wh = (target - soc) / 100.0 * car.capacity_wh
        if step_wh >= room_wh:
            h *= room_wh / step_wh if step_wh > 0 else 1.0
            energy, elapsed, soc = energy + room_wh, elapsed + h, target
            break
        energy, elapsed = energy + step_wh, elapsed + h
        soc += step_wh / car.capacity_wh * 100.0
    if soc >= target:
        return ChargeStep(energy_wh=energy, soc=target, elapsed_s=elapsed, reached_target=True)
    return ChargeStep(energy_wh=energy, soc=soc, elapsed_s=elapsed, reached_target=False)
