"""ActorSlot: where a plain object finds an actor that starts after it was built.

The composition root builds the plain objects first (the gateway needs them before any
actor runs), then starts the actors in dependency order and puts each one's ref in its
slot; stopping empties it. A slot is a one-entry registry: it holds a ref, never the
system, so nothing is built in a circle.
"""

from __future__ import annotations

from typing import Any

import pykka

from storage.errors import ActorUnavailableError

__all__ = ["ActorSlot"]


class ActorSlot:
    """The ref of one running actor, or nothing (``get`` then raises)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ref: pykka.ActorRef[Any] | None = None

    def put(self, ref: pykka.ActorRef[Any] | None) -> None:
        self._ref = ref

    def get(self) -> pykka.ActorRef[Any]:
        ref = self._ref
        if ref is None:
            raise ActorUnavailableError("the CSMS is not running")
        return ref
