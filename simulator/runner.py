"""The thread-safe shell around one :class:`~simulator.station.StationSimulator`.

Three threads touch a station: its paho network thread (connections and
commands), the fleet's single ticker thread (physics) and the main thread
(start-up and shutdown). :class:`StationRunner` serialises them with one lock
per station, publishes what the simulator returns *while holding that lock* (so
messages leave in ``seq`` order) and decides when to save: at once after a
status change, and meter progress on every batch (fsynced at most every
``save_every`` real seconds).
The transport is a plain callable, so tests run it with a list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from actors.protocol import Message
from simulator.persistence import StationStore
from simulator.station import StationSimulator

__all__ = ["Publish", "StationRunner"]

log = logging.getLogger("simulator.runner")

Publish = Callable[[Message], None]


class StationRunner:
    """Lock + persistence + publishing for one station; transport-agnostic."""

    def __init__(
        self,
        simulator: StationSimulator,
        publish: Publish,
        *,
        store: StationStore | None = None,
        save_every: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.simulator = simulator
        self._publish = publish
        self._store = store
        self._save_every = save_every
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_save = float("-inf")

    @property
    def station_id(self) -> str:
        return self.simulator.station_id

    def connected(self) -> None:
        """Runs on the paho thread after every CONNACK: birth and all statuses."""
        with self._lock:
            self._send(self.simulator.online_messages())

    def received(self, topic: str, payload: bytes) -> None:
        """Runs on the paho thread for every incoming message (never raises)."""
        try:
            with self._lock:
                self._send(self.simulator.handle_payload(topic, payload))
        except Exception:
            log.exception("Station %s failed to handle a message on %s", self.station_id, topic)

    def tick(self, now: float) -> None:
        """Runs on the fleet ticker thread (never raises: one station must not stop the rest)."""
        try:
            with self._lock:
                self._send(self.simulator.tick(now))
        except Exception:
            log.exception("Station %s failed to tick", self.station_id)

    def shutdown_message(self) -> Message:
        with self._lock:
            return self.simulator.offline_message("shutdown")

    def save(self) -> None:
        """Save now, whatever changed (the final save on shutdown)."""
        with self._lock:
            self._save()

    def _send(self, messages: list[Message]) -> None:
        """Save first, then publish: the CSMS never sees a value the station could lose.

        A status change is saved durably (fsync). Meter progress is saved on every
        batch too, so a killed process resumes with the register it last published
        (the atomic rename is enough against a process crash), but fsynced at most
        every ``save_every`` seconds, so a fleet at ``--speed 60`` does not fsync
        hundreds of times a second.
        """
        sim = self.simulator
        if sim.needs_save:
            self._save(durable=True)
        elif sim.has_progress and messages:
            due = self._monotonic() - self._last_save >= self._save_every
            self._save(durable=due)
        for message in messages:
            self._publish(message)

    def _save(self, durable: bool = True) -> None:
        snapshot = self.simulator.checkpoint()
        if durable:
            self._last_save = self._monotonic()
        if self._store is None:
            return
        try:
            self._store.save(snapshot, durable=durable)
        except OSError:
            log.exception("Station %s could not save %s", self.station_id, self._store.path)
