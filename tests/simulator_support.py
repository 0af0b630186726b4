"""Shared by the station simulator tests (tests/test_simulator_*.py): a station on a ManualClock,
commands sent to it by hand, and helpers that read its replies and statuses and run it on."""

from __future__ import annotations

import itertools
from typing import Any

from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseDescriptor,
    EvseId,
    EvseStatus,
    Message,
    StationDescriptor,
    StationId,
    StatusReport,
)
from simulator import ManualClock, StationSimulator

SID = StationId("st-1")
EVSE = "1"
OTHER = "2"
LIFETIME_MS = 10_000  # the CSMS's default command time-out


def descriptor(power: float = 22_000.0, connector: str = "Type2") -> StationDescriptor:
    evses = tuple(
        EvseDescriptor(id=EvseId(str(k)), connector=connector, max_power_w=power) for k in (1, 2)
    )
    return StationDescriptor(id=SID, name="Test", lat=44.5, lon=11.3, evses=evses)


def station(seed: int = 1, **kwargs: Any) -> tuple[StationSimulator, ManualClock]:
    clock = ManualClock()
    return StationSimulator(descriptor(), clock=clock, seed=seed, **kwargs), clock


_command_ids = itertools.count(1)


def command(
    name: str, evse: str = EVSE, *, sent: float = 1_700_000_000.0, **args: Any
) -> CommandRequest:
    """A command as the CSMS sends it at ``sent`` (seconds), expiring 10 s later; a new id."""
    return CommandRequest(
        station_id=SID, id=CorrelationId(f"c-{next(_command_ids)}"), command=CommandName(name),
        evse_id=EvseId(evse),
        ts=int(sent * 1000), expires_at=int(sent * 1000) + LIFETIME_MS, args=args,
    )  # fmt: skip


def send(sim: StationSimulator, name: str, evse: str = EVSE, **args: Any) -> list[Message]:
    """A command sent just now (on the station's wall clock, which is its clock here)."""
    return sim.handle_command(command(name, evse, sent=sim_wall_now(sim), **args))


def sim_wall_now(sim: StationSimulator) -> float:
    return sim.offline_message().ts / 1000


def reply(messages: list[Message]) -> CommandReply:
    return next(m for m in messages if isinstance(m, CommandReply))


def statuses(messages: list[Message]) -> list[EvseStatus]:
    return [m.info.status for m in messages if isinstance(m, StatusReport)]


def run(
    sim: StationSimulator, clock: ManualClock, seconds: float, step: float = 5.0
) -> list[Message]:
    out: list[Message] = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        out += sim.tick()
    return out


def run_until(
    sim: StationSimulator, clock: ManualClock, status: EvseStatus, evse: str = EVSE
) -> list[Message]:
    out: list[Message] = []
    for _ in range(20_000):
        clock.advance(5.0)
        out += sim.tick()
        if sim.evse_info(evse).status is status:
            return out
    raise AssertionError(f"never reached {status}")


def charging(target_soc: float | None = None) -> tuple[StationSimulator, ManualClock]:
    sim, clock = station()
    args: dict[str, Any] = {"session_id": "s-1"}
    if target_soc is not None:
        args["target_soc"] = target_soc
    assert reply(send(sim, "start", **args)).accepted
    run(sim, clock, 5)
    return sim, clock
