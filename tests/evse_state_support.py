"""Shared by the EVSE state tests (tests/test_evse_state_*.py): the rules both state machines
run, against a small model of their own.

The rules are the model, the generated station reports and the commands a driver sends,
answered, refused, late or never; only how a message reaches the system under test differs.
The model is written from the protocol document, not from the code: it imports neither the
transition table nor ``is_legal``; time is a manual clock, and time-outs are messages the test
sends (no timer runs).
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.evse_state import EvseState
from actors.messages import CommandOutcome, SendCommand
from protocol import (
    CommandName,
    CommandReply,
    CommandRequest,
    CorrelationId,
    EvseDescriptor,
    EvseId,
    EvseInfo,
    EvseStatus,
    MaintenanceArgs,
    MeterValues,
    SessionId,
    StartArgs,
    StationBirth,
    StationDescriptor,
    StationId,
    StationOffline,
    StatusReport,
    command_for,
    evse_key,
)
from storage.errors import CommandTimeoutError

SID, EID = StationId("st-001"), EvseId("1")
KEY = evse_key(SID, EID)
STATION_STATUSES = [s for s in EvseStatus if s is not EvseStatus.OFFLINE]
# From docs/protocol.md (section 5.3), not from the code under test: a session is open while
# the EVSE charges or is suspended, and these statuses must name it.
MODEL_SESSION_STATUSES = {
    EvseStatus.CHARGING,
    EvseStatus.SUSPENDED_EV,
    EvseStatus.SUSPENDED_EVSE,
}
WAIT_S = 5.0


def fresh_state() -> EvseState:
    return EvseState(station_id=SID, descriptor=EvseDescriptor(id=EID))


class _Model:
    """What the CSMS should believe, computed without the code under test."""

    def __init__(self) -> None:
        self.status = EvseStatus.OFFLINE
        self.before_offline: EvseStatus | None = None
        self.energy = 0.0
        self.session: SessionId | None = None
        self.epoch = -1
        self.seq = -1
        self.resets = 0
        self.online = False
        self.pending: dict[str, tuple[CommandName, pykka.Future[Any] | None, Any]] = {}
        """Commands sent and not yet answered nor timed out, oldest first."""
        self.timed_out: list[str] = []
        self.abandoned: set[SessionId] = set()
        """Starts that timed out: if the station runs one anyway, the CSMS stops it."""

    @property
    def reachable(self) -> bool:
        return self.online or self.status is not EvseStatus.OFFLINE


class EvseRules(RuleBasedStateMachine):
    """Generates station traffic (fresh, stale and illegal) and checks the outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _Model()
        self.clock = 1_000
        self.epoch = 0
        self.next_seq = 0
        self.sessions = 0
        self.commands = 0

    def deliver(self, event: Any) -> EvseState:
        raise NotImplementedError

    def current(self) -> EvseState:
        raise NotImplementedError

    def send(self, command: SendCommand) -> None:
        """Hand a driver's command to the system under test."""
        raise NotImplementedError

    def time_out(self, cid: str) -> None:
        """The command's timer fires (the test is the clock)."""
        raise NotImplementedError

    def requests(self) -> list[CommandRequest]:
        """Every command request the system under test published so far, in order."""
        raise NotImplementedError

    def _tick(self) -> tuple[int, int]:
        self.clock += 1_000
        self.next_seq += 1
        return self.next_seq, self.clock

    @rule(reboot=st.booleans(), lost_counter=st.booleans())
    def station_comes_online(self, reboot: bool, lost_counter: bool) -> None:
        """A reconnect keeps the epoch (the count goes on); a reboot starts a new epoch; a
        station that lost its storage may even start over at a lower one."""
        if reboot:
            self.epoch = 0 if lost_counter else self.epoch + 1
            self.next_seq = 0
        station = StationDescriptor(id=SID, name="S", lat=0, lon=0, evses=())
        self.deliver(StationBirth(station=station, ts=self.clock, epoch=self.epoch))
        if self.epoch != self.model.epoch:
            self.model.epoch, self.model.seq = self.epoch, -1
        self.model.online = True

    @rule()
    def station_goes_offline(self) -> None:
        self.deliver(StationOffline(station_id=SID, ts=self.clock))
        self.model.online = False
        if self.model.status is not EvseStatus.OFFLINE:
            self.model.before_offline = self.model.status
            self.model.status = EvseStatus.OFFLINE

    @rule(
        status=st.sampled_from(STATION_STATUSES),
        with_session=st.booleans(),
        new_session=st.booleans(),
        energy=st.floats(0, 5_000),
        stale=st.booleans(),
        meter_swapped=st.booleans(),
    )
    def station_reports_status(
        self,
        status: EvseStatus,
        with_session: bool,
        new_session: bool,
        energy: float,
        stale: bool,
        meter_swapped: bool,
    ) -> None:
        epoch = self.epoch
        if stale and self.model.seq >= 0:
            epoch, seq, ts = self.model.epoch, self.model.seq, self.clock + 5_000
        else:
            seq, ts = self._tick()
        # A station never reuses a session id once that session has closed.
        if (
            new_session
            or self.model.session is None
            or self.model.status not in MODEL_SESSION_STATUSES
        ):
            self.sessions += 1
            current = SessionId(f"s{self.sessions}")
        else:
            current = self.model.session  # the running one (maybe a start the CSMS sent)
        session = current if with_session else None
        total = energy if meter_swapped else self.model.energy + energy
        info = EvseInfo(evse_id=EID, status=status, energy_wh=total, session_id=session)
        self.deliver(StatusReport(station_id=SID, info=info, seq=seq, ts=ts, epoch=epoch))
        # Fresh and well-formed is enough: an unexpected change is applied (and flagged).
        accepted = (
            epoch > self.model.epoch or (epoch == self.model.epoch and seq > self.model.seq)
        ) and (status not in MODEL_SESSION_STATUSES or session is not None)
        if accepted:  # a register that went back (a new meter) is applied, never refused
            m = self.model
            m.status, m.energy, m.session, m.epoch, m.seq = status, total, session, epoch, seq
            m.before_offline = None

    @precondition(lambda self: self.model.status in MODEL_SESSION_STATUSES)
    @rule(energy=st.floats(0, 2_000), backwards=st.booleans())
    def station_sends_meter_values(self, energy: float, backwards: bool) -> None:
        seq, ts = self._tick()
        total = max(self.model.energy - 1, 0) if backwards else self.model.energy + energy
        meter = MeterValues(
            station_id=SID,
            evse_id=EID,
            session_id=self.model.session,
            power_w=7_000,
            energy_wh=total,
            soc=50,
            seq=seq,
            ts=ts,
            epoch=self.epoch,
        )
        self.deliver(meter)
        if (self.epoch, seq) > (self.model.epoch, self.model.seq):
            self.model.energy, self.model.epoch, self.model.seq = total, self.epoch, seq

    @invariant()
    def status_is_what_the_model_says(self) -> None:
        assert self.current().status == self.model.status

    # ------------------------------------------------------------------ commands

    @rule(
        name=st.sampled_from(
            [CommandName.START, CommandName.STOP, CommandName.INFO, CommandName.MAINTENANCE]
        )
    )
    def driver_sends_a_command(self, name: CommandName) -> None:
        self.commands += 1
        args: Any = None
        if name is CommandName.START:
            args = StartArgs(session_id=SessionId(f"start-{self.commands}"))
        elif name is CommandName.MAINTENANCE:
            args = MaintenanceArgs(enabled=True)
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        before = len(self.requests())
        reachable = self.model.reachable
        self.send(SendCommand(args=command_for(name, args), reply=future, timeout_s=10.0))
        sent = self.requests()[before:]
        if not reachable:  # refused at once, never queued for a station that is away
            outcome = future.get(timeout=WAIT_S)
            assert (outcome.accepted, outcome.reason) == (False, "offline")
            assert sent == []
            return
        assert len(sent) == 1
        request = sent[0]
        assert (request.command, request.evse_id) == (name, EID)
        assert request.expires_at - request.ts == 10_000
        assert request.id not in self.model.pending
        self.model.pending[request.id] = (name, future, args)

    @precondition(lambda self: self.model.pending)
    @rule(accepted=st.booleans())
    def station_answers_the_oldest_command(self, accepted: bool) -> None:
        cid, (name, future, _args) = next(iter(self.model.pending.items()))
        before = self.current()
        self.deliver(self._reply(cid, name, accepted))
        del self.model.pending[cid]
        if future is not None:
            outcome: CommandOutcome = future.get(timeout=WAIT_S)
            assert (outcome.command, outcome.accepted) == (name, accepted)
        assert self.current() == before, "a reply without info moves nothing"

    @precondition(lambda self: self.model.pending)
    @rule()
    def the_oldest_command_times_out(self) -> None:
        cid, (_name, future, args) = next(iter(self.model.pending.items()))
        self.time_out(cid)
        del self.model.pending[cid]
        self.model.timed_out.append(cid)
        if future is not None:
            with pytest.raises(CommandTimeoutError):
                future.get(timeout=WAIT_S)
        if isinstance(args, StartArgs):
            self.model.abandoned.add(args.session_id)

    @precondition(lambda self: self.model.timed_out)
    @rule(accepted=st.booleans())
    def station_answers_too_late(self, accepted: bool) -> None:
        """A reply after its time-out (or a forged one) changes nothing and sends nothing."""
        cid = self.model.timed_out[-1]
        before, sent = self.current(), len(self.requests())
        info = EvseInfo(evse_id=EID, status=EvseStatus.FAULTED)
        self.deliver(self._reply(cid, CommandName.START, accepted, info))
        assert self.current() == before
        assert len(self.requests()) == sent

    @precondition(lambda self: self.model.abandoned)
    @rule()
    def station_runs_a_start_that_timed_out(self) -> None:
        """The driver was told it did not start: the CSMS stops it (once)."""
        session = sorted(self.model.abandoned)[0]
        seq, ts = self._tick()
        info = EvseInfo(
            evse_id=EID, status=EvseStatus.CHARGING, energy_wh=self.model.energy, session_id=session
        )
        sent = len(self.requests())
        self.deliver(StatusReport(station_id=SID, info=info, seq=seq, ts=ts, epoch=self.epoch))
        m = self.model
        stops = self.requests()[sent:]
        if (self.epoch, seq) <= (m.epoch, m.seq):  # a station that lost its counter: stale
            assert stops == []
            return
        m.status, m.session, m.epoch, m.seq, m.before_offline = (
            EvseStatus.CHARGING,
            session,
            self.epoch,
            seq,
            None,
        )
        m.abandoned.discard(session)
        assert [(r.command, r.args.get("session_id")) for r in stops] == [
            (CommandName.STOP, session)
        ]
        m.pending[stops[0].id] = (CommandName.STOP, None, None)  # the CSMS's own command

    def _reply(
        self, cid: str, name: CommandName, accepted: bool, info: EvseInfo | None = None
    ) -> CommandReply:
        return CommandReply(
            station_id=SID,
            id=CorrelationId(cid),
            command=name,
            evse_id=EID,
            accepted=accepted,
            info=info,
            ts=self.clock,
        )

    @invariant()
    def session_is_open_iff_charging_or_suspended(self) -> None:
        s = self.current()
        effective = s.status_before_offline if s.status is EvseStatus.OFFLINE else s.status
        assert s.session_open == (effective in MODEL_SESSION_STATUSES)
        if s.session_open:
            assert s.session_id is not None

    @invariant()
    def energy_register_is_what_the_model_says(self) -> None:
        s = self.current()
        assert s.energy_wh == pytest.approx(self.model.energy)


@pytest.fixture(autouse=True)
def _stop_actors() -> Any:
    yield
    pykka.ActorRegistry.stop_all()
