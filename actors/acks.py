"""AppliedLatch: acknowledge a batch of QoS 1 messages to the broker once it has been applied.

The MQTT client (:mod:`actors.mqtt_session`, in :mod:`actors.mqtt_link`'s child process or
in the CSMS's own) uses paho's ``manual_ack``: a message is acknowledged (PUBACK) only when
the CSMS has applied it, so a crash between receipt and apply leaves it with the broker,
which delivers it again (``DUP`` set) to the session's next connection. The EVSE logic ignores
a report whose ``seq`` it has already applied, so a redelivery changes nothing.

One latch per raw batch the client handed over, a countdown shared by every thread the
batch fans out to::

    bridge (reader thread)      latch = AppliedLatch(ack)       count 1 (the bridge's part)
      -> IngestRouter           (same thread, actors.routing) latch.hold() per EVSE actor
                                the batch reached and per held station, then release()
                                (the bridge's part, or it goes with what the supervisor
                                routes, which passes it on behind those messages)
      -> EvseActor, per EVSE    after the batch's messages for it were applied and their
                                changes fanned out: release(), unless the changes open or
                                close a session and a session writer exists: then the
                                actor's part goes with the changes to
      -> SessionRecorder        its subscriber releases it after ``batch_done()`` (the
                                batch's database transaction)

At zero the latch calls ``on_zero`` once (on whichever thread released last): the link
sends the batch's message ids to the client, which acknowledges those of the connection
they arrived on and drops the others (the broker redelivers those anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["AppliedLatch"]


class AppliedLatch:
    """A countdown that starts at 1 and calls ``on_zero`` once when it reaches 0.

    Thread-safe; ``hold`` and ``release`` may run on any thread. Releasing more than was
    held is a bug and raises ``RuntimeError`` (it would acknowledge a batch too early).
    """

    __slots__ = ("_count", "_lock", "_on_zero")

    def __init__(self, on_zero: Callable[[], None]) -> None:
        self._count = 1
        self._lock = threading.Lock()
        self._on_zero: Callable[[], None] | None = on_zero

    def __repr__(self) -> str:
        return f"<AppliedLatch count={self._count}>"

    @property
    def done(self) -> bool:
        return self._count == 0

    def hold(self, parts: int = 1) -> None:
        """``parts`` more releases are needed before the batch counts as applied."""
        with self._lock:
            if self._count <= 0:
                raise RuntimeError("hold() on a latch that already reached zero")
            self._count += parts

    def release(self) -> None:
        """One part is done; the last one calls ``on_zero`` (outside the lock)."""
        with self._lock:
            if self._count <= 0:
                raise RuntimeError("release() on a latch that already reached zero")
            self._count -= 1
            if self._count:
                return
            on_zero, self._on_zero = self._on_zero, None
        if on_zero is not None:
            on_zero()
