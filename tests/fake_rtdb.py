"""``FakeRealtimeDatabase``: an in-memory FAKE of the few ``firebase_admin.db`` calls the
RTDB stores use. It is NOT Firebase and NOT the emulator.

It exists because the Realtime Database emulator cannot run on our machines: it needs Java 21
(they have 17) and downloads its JAR from the internet on first start. Tests of
``storage.firebase_rtdb`` therefore run against this fake, and against the real emulator only
when ``FIREBASE_DATABASE_EMULATOR_HOST`` points at one.

What it imitates (and how faithfully):

- a JSON tree; ``set``/``update``/transactions store deep copies, drop ``None`` values and
  empty objects (as RTDB does), and ``get`` returns copies;
- ``Reference``: ``child``, ``get``, ``set``, ``update``, ``push`` (time-ordered keys),
  ``delete``, ``transaction`` (under one lock, so it never retries: real transactions are
  compare-and-set on an ETag and may call the update function several times);
- ``Query`` from ``order_by_child``/``order_by_key``: ``equal_to``, ``start_at``, ``end_at``,
  ``limit_to_first``, ``limit_to_last``, ``get``. Ordering and the OrderedDict result come from
  firebase-admin's own client-side sorter (``firebase_admin.db._Sorter``), so values compare
  as in RTDB (null < false < true < numbers < strings < objects); range filters compare with
  the same rules. Indexes (``.indexOn``) are not needed here and not checked.

Not imitated: security rules, ETags, listeners, priorities, array coercion of integer keys,
network errors.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from firebase_admin.db import _SortEntry, _Sorter

__all__ = ["FakeQuery", "FakeRealtimeDatabase", "FakeReference"]


def _prune(value: Any) -> Any:
    """What RTDB would keep of ``value``: no ``None`` leaves, no empty objects."""
    if isinstance(value, dict):
        pruned = {str(k): _prune(v) for k, v in value.items()}
        pruned = {k: v for k, v in pruned.items() if v is not None}
        return pruned or None
    return copy.deepcopy(value)


def _entry(key: str, index: Any, order_by: str) -> _SortEntry:
    """firebase-admin's sort entry for a child whose ordering value is ``index``."""
    if order_by == "$key":
        return _SortEntry(index, None, "$key")
    return _SortEntry(key, index, "$value")


class FakeRealtimeDatabase:
    """One in-memory database. ``root()`` is the stand-in for ``db.reference("/")``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.data: Any = None
        self._push_ids = itertools.count()

    def root(self) -> FakeReference:
        return FakeReference(self, ())

    def push_key(self) -> str:
        return f"-{time.time_ns():020d}{next(self._push_ids):06d}"

    # -- tree access (call with the lock held)

    def read(self, path: tuple[str, ...]) -> Any:
        node = self.data
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def write(self, path: tuple[str, ...], value: Any) -> None:
        value = _prune(value)
        if not path:
            self.data = value
            return
        if not isinstance(self.data, dict):
            self.data = {}
        parents = [self.data]
        node = self.data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
            parents.append(node)
        if value is None:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        # Remove parents left empty, as RTDB does.
        for depth in range(len(path) - 1, 0, -1):
            if not parents[depth]:
                parents[depth - 1].pop(path[depth - 1], None)
        if not self.data:
            self.data = None


class FakeReference:
    """The subset of ``firebase_admin.db.Reference`` the stores call."""

    def __init__(self, db: FakeRealtimeDatabase, path: tuple[str, ...]) -> None:
        self._db = db
        self.path = path

    @property
    def key(self) -> str | None:
        return self.path[-1] if self.path else None

    def child(self, path: str) -> FakeReference:
        parts = tuple(p for p in path.split("/") if p)
        if not parts:
            raise ValueError("child path must be a non-empty string")
        for part in parts:
            if any(c in part for c in ".#$[]"):
                raise ValueError(f"invalid key {part!r}")
        return FakeReference(self._db, self.path + parts)

    def get(self) -> Any:
        with self._db.lock:
            return copy.deepcopy(self._db.read(self.path))

    def set(self, value: Any) -> None:
        if value is None:
            raise ValueError("Value must not be None.")
        with self._db.lock:
            self._db.write(self.path, value)

    def update(self, value: dict[str, Any]) -> None:
        if not value or not isinstance(value, dict):
            raise ValueError("Value argument must be a non-empty dictionary.")
        with self._db.lock:
            for key, child_value in value.items():
                self._db.write(self.path + tuple(p for p in key.split("/") if p), child_value)

    def push(self, value: Any = "") -> FakeReference:
        if value is None:
            raise ValueError("Value must not be None.")
        ref = self.child(self._db.push_key())
        ref.set(value)
        return ref

    def delete(self) -> None:
        with self._db.lock:
            self._db.write(self.path, None)

    def transaction(self, transaction_update: Callable[[Any], Any]) -> Any:
        if not callable(transaction_update):
            raise ValueError("transaction_update must be a function.")
        with self._db.lock:
            new_value = transaction_update(copy.deepcopy(self._db.read(self.path)))
            self._db.write(self.path, new_value)
            return new_value

    def order_by_child(self, path: str) -> FakeQuery:
        if not path or path.startswith("$"):
            raise ValueError(f"Illegal child path: {path}")
        return FakeQuery(self, path)

    def order_by_key(self) -> FakeQuery:
        return FakeQuery(self, "$key")


class FakeQuery:
    """The subset of ``firebase_admin.db.Query`` the stores call."""

    def __init__(self, ref: FakeReference, order_by: str) -> None:
        self._ref = ref
        self._order_by = order_by
        self._start: Any = None
        self._end: Any = None
        self._first: int | None = None
        self._last: int | None = None

    def equal_to(self, value: Any) -> FakeQuery:
        if value is None:
            raise ValueError("Equal to value must not be None.")
        return self.start_at(value).end_at(value)

    def start_at(self, value: Any) -> FakeQuery:
        if value is None:
            raise ValueError("Start value must not be None.")
        self._start = value
        return self

    def end_at(self, value: Any) -> FakeQuery:
        if value is None:
            raise ValueError("End value must not be None.")
        self._end = value
        return self

    def limit_to_first(self, limit: int) -> FakeQuery:
        if self._last is not None:
            raise ValueError("Cannot set both first and last limits.")
        self._first = limit
        return self

    def limit_to_last(self, limit: int) -> FakeQuery:
        if self._first is not None:
            raise ValueError("Cannot set both first and last limits.")
        self._last = limit
        return self

    def _value_of(self, key: str, child: Any) -> Any:
        if self._order_by == "$key":
            return key
        node = child
        for part in self._order_by.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def get(self) -> Any:
        children = self._ref.get()
        if not isinstance(children, dict):
            return children
        by = self._order_by
        entries: list[tuple[str, Any]] = []
        for key, child in children.items():
            probe = _entry(key, self._value_of(key, child), by)
            if self._start is not None and probe < _entry(key, self._start, by):
                continue
            if self._end is not None and _entry(key, self._end, by) < probe:
                continue
            entries.append((key, child))
        ordered = list(_Sorter(dict(entries), by).get().items()) if entries else []
        if self._first is not None:
            ordered = ordered[: self._first]
        if self._last is not None:
            ordered = ordered[len(ordered) - self._last :] if self._last else []
        return OrderedDict(ordered)
