"""What a station keeps until the broker has it: session-critical messages, in order.

Why (protocol v2, section "Offline queue"): a session's end must reach the CSMS even
if the connection drops around it, and it must arrive *before* the station's next
birth and fresh statuses, or the CSMS cannot tell it from a stale report. So every
session-critical message enters the :class:`Outbox` when it is made (connected or
not), is saved with the station's JSON state before it is published, and leaves
only when its PUBACK arrives. On every (re)connection the station publishes what
is still there first, in order; a station killed during that replay replays again
(the CSMS ignores duplicates by ``(epoch, seq)``).

Session-critical, by :func:`keep_levels`: a status report that ends a session
(``Finishing`` with ``stop_reason``) and the meter values just before it
(:attr:`Keep.SESSION_END`), and any other status change while a session is shown
(:attr:`Keep.SESSION`). Plain meter values, replies and statuses outside a session
are not kept: a station that could not send them drops them, and its fresh
statuses after the reconnect say where things stand.

Pure data, no I/O, not thread-safe: the station's runner holds its lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, Final

from protocol import (
    EvseStatus,
    Message,
    MeterValues,
    ProtocolError,
    StatusReport,
    encode,
    parse,
)

__all__ = ["MAX_KEPT", "Keep", "Outbox", "OutboxKey", "keep_levels", "outbox_key"]

log = logging.getLogger("simulator.outbox")

MAX_KEPT: Final = 1_000
"""At most this many messages are kept; beyond it the oldest :attr:`Keep.SESSION` goes
first, and a session end only when nothing else is left to drop."""

Kept = StatusReport | MeterValues
OutboxKey = tuple[int, int]
"""``(epoch, seq)``: unique for every status and meter message of a station."""


class Keep(StrEnum):
    """How much a kept message matters when the outbox is full."""

    SESSION_END = "session_end"
    SESSION = "session"


def outbox_key(message: Kept) -> OutboxKey:
    return (message.epoch, message.seq)


def keep_levels(messages: Sequence[Message]) -> list[Keep | None]:
    """Which of one batch of messages to keep (``None``: not session-critical).

    The batch matters for meter values: only the sample taken just before its EVSE's
    session ends (``Finishing`` with ``stop_reason``, later in the same batch) is kept.
    """
    levels: list[Keep | None] = [None] * len(messages)
    ending: set[str] = set()  # EVSEs whose session end comes later in the batch
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, StatusReport):
            info = message.info
            if info.status is EvseStatus.FINISHING and info.stop_reason is not None:
                levels[i] = Keep.SESSION_END
                ending.add(info.evse_id)
            elif info.session_id is not None:
                levels[i] = Keep.SESSION
        elif isinstance(message, MeterValues) and message.evse_id in ending:
            levels[i] = Keep.SESSION_END
            ending.discard(message.evse_id)
    return levels


class Outbox:
    """Kept messages in publication order, keyed by ``(epoch, seq)``."""

    def __init__(self, limit: int = MAX_KEPT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self._limit = limit
        self._entries: dict[OutboxKey, tuple[Kept, Keep]] = {}  # insertion-ordered
        self.dropped = 0
        """Messages dropped because the outbox was full (since this process started)."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def messages(self) -> list[Kept]:
        """Everything kept, oldest first: what to publish first on a reconnection."""
        return [message for message, _ in self._entries.values()]

    def add(self, message: Kept, level: Keep) -> None:
        if len(self._entries) >= self._limit:
            self._drop_one()
        self._entries[outbox_key(message)] = (message, level)

    def add_batch(self, messages: Sequence[Message]) -> None:
        """Keep the session-critical messages of one batch (:func:`keep_levels`)."""
        for message, level in zip(messages, keep_levels(messages), strict=True):
            if level is not None and isinstance(message, StatusReport | MeterValues):
                self.add(message, level)

    def delivered(self, key: OutboxKey) -> bool:
        """The broker acknowledged this message: forget it. ``True`` if it was kept."""
        return self._entries.pop(key, None) is not None

    def _drop_one(self) -> None:
        victim = next(
            (k for k, (_, level) in self._entries.items() if level is Keep.SESSION),
            next(iter(self._entries)),
        )
        message, level = self._entries.pop(victim)
        self.dropped += 1
        if self.dropped in (1, 10) or self.dropped % 1000 == 0:
            log.warning(
                "Station %s: outbox full (%d), dropped a kept %s message (%d so far)",
                message.station_id,
                self._limit,
                level,
                self.dropped,
            )

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> list[dict[str, Any]]:
        """The wire form of each message, so a saved outbox replays byte for byte."""
        out = []
        for message, level in self._entries.values():
            topic, payload, _ = encode(message)
            out.append({"level": str(level), "topic": topic, "payload": payload.decode()})
        return out

    @classmethod
    def from_json(cls, raw: Iterable[Any], station_id: str, limit: int = MAX_KEPT) -> Outbox:
        """Rebuild a saved outbox; entries that no longer parse are skipped (and logged)."""
        outbox = cls(limit)
        for entry in raw:
            try:
                message = parse(entry["topic"], entry["payload"].encode())
                level = Keep(entry["level"])
            except (ProtocolError, KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("Station %s: skipping a saved outbox entry: %s", station_id, exc)
                continue
            if isinstance(message, StatusReport | MeterValues) and message.station_id == station_id:
                outbox.add(message, level)
        return outbox
