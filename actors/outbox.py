"""EvseOutbox: what the supervisor sends EVSE actors, one batch per actor per turn.

The supervisor queues items for EVSE actors while it handles a burst (births, offline notices,
messages the ingest router held for it) and sends each actor one
:class:`~actors.evse.EvseBatch` at the end (:meth:`EvseOutbox.flush`): one ``tell`` per actor
per burst, in order. It also passes each raw batch's :class:`~actors.acks.AppliedLatch` on
behind the messages it carried, to every actor they reached (:meth:`EvseOutbox.pass_latch`).
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from actors.acks import AppliedLatch
from actors.evse import EvseBatch
from protocol import EvseId

__all__ = ["EvseOutbox"]

log = logging.getLogger(__name__)


class EvseOutbox:
    """Used on the supervisor's thread only."""

    def __init__(self) -> None:
        self._boxes: dict[EvseId, tuple[pykka.ActorRef[Any], list[Any]]] = {}
        self._touched: dict[EvseId, pykka.ActorRef[Any]] = {}
        """EVSE actors sent anything since the last batch's latch (see :meth:`pass_latch`)."""

    def put(self, evse_id: EvseId, ref: pykka.ActorRef[Any], item: Any) -> None:
        """Queue ``item`` for ``ref`` (the EVSE's live actor); :meth:`flush` sends it."""
        self._touched[evse_id] = ref
        box = self._boxes.get(evse_id)
        if box is None or box[0] is not ref:
            self._boxes[evse_id] = (ref, [item])
        else:
            box[1].append(item)

    def flush(self) -> None:
        boxes, self._boxes = self._boxes, {}
        for evse_id, (ref, items) in boxes.items():
            try:
                ref.tell(EvseBatch(items=items))
            except pykka.ActorDeadError:
                log.warning("EVSE actor %s is down; dropped %d messages", evse_id, len(items))

    def pass_latch(self, latch: AppliedLatch) -> None:
        """A raw batch is routed: its latch goes behind it to every EVSE actor it reached
        (each releases its part once it has applied what came before); the bridge's part
        ends here."""
        touched, self._touched = self._touched, {}
        for evse_id, ref in touched.items():
            box = self._boxes.get(evse_id)
            if box is None:  # its messages already went (a release flushes): the latch follows
                latch.hold()
                self._boxes[evse_id] = (ref, [latch])
            elif box[0] is ref:
                latch.hold()
                box[1].append(latch)
        latch.release()
