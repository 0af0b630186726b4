"""Login attempts that slow a password guesser down without locking anyone else out.

A limit per account would let anyone lock anyone out (five wrong passwords for alice, and
alice herself is refused). Instead, failures are counted per *(account, client address)*:

- each pair gets ``free_failures`` wrong passwords; after that it must wait before its next
  attempt, twice as long after every further failure (``base_delay_s`` doubling, at most
  ``max_delay_s``), answered as 429 with ``Retry-After``; a correct password clears the pair;
- account-wide, once the account collects more than ``account_failures`` failures within
  ``account_window_s`` from all addresses together (a guesser spread over many addresses), the
  backoff starts at the *first* failure of every pair: each address with a failure on the
  account is slowed down at once. An address that has not failed on the account (alice on her
  phone) is never slowed by others' failures.

Every attempt also counts against the client address (``per_address``, all accounts), so one
address cannot spray guesses over many accounts. The failures are kept in the database when
``shared`` is given (what the gateway workers do: one count for all of them, else a guesser
got one allowance per worker; ``clock`` must then be wall time), else in memory, bounded by
``max_keys`` (the least recently failed pairs and accounts are forgotten first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.ratelimit import SlidingWindowLimiter

__all__ = ["LoginGuard"]


@dataclass(slots=True)
class _PairFailures:
    count: int
    last_at: float


class SharedFailures(Protocol):
    """Failures kept where every worker sees them (``storage.LoginFailureStore``); epoch ms."""

    def get(self, account: str, address: str) -> tuple[int, int] | None: ...

    def record(self, account: str, address: str, at: int) -> None: ...

    def forgive(self, account: str, address: str) -> None: ...

    def account_failures(self, account: str, since: int) -> int: ...


class LoginGuard:
    """Thread-safe; ``check`` before verifying a password, then ``failed`` or ``succeeded``."""

    def __init__(
        self,
        per_address: SlidingWindowLimiter,
        *,
        free_failures: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        account_failures: int = 20,
        account_window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
        shared: SharedFailures | None = None,
    ) -> None:
        self.per_address = per_address
        self._free = free_failures
        self._base = base_delay_s
        self._max = max_delay_s
        self._account_limit = account_failures
        self._account_window = account_window_s
        self._clock = clock
        self._max_keys = max_keys
        self._shared = shared
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], _PairFailures] = OrderedDict()
        self._accounts: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, email: str, address: str) -> float | None:
        """None if this attempt may go ahead, else the seconds to wait (``Retry-After``)."""
        wait = self.per_address.hit(address)
        if wait is not None:
            return wait
        account = _key(email)
        if self._shared is not None:
            return self._check_shared(self._shared, account, address)
        with self._lock:
            now = self._clock()
            pair = self._pairs.get((account, address))
            if pair is None:
                return None
            return self._wait(pair.count, pair.last_at, self._account_is_hot(account, now), now)

    def _check_shared(self, shared: SharedFailures, account: str, address: str) -> float | None:
        now = self._clock()
        found = shared.get(account, address)
        if found is None:
            return None
        since = int((now - self._account_window) * 1000)
        hot = shared.account_failures(account, since) > self._account_limit
        return self._wait(found[0], found[1] / 1000, hot, now)

    def _wait(self, count: int, last_at: float, hot: bool, now: float) -> float | None:
        """Seconds the pair must still wait, or None."""
        over = count - (0 if hot else self._free)
        if over <= 0:
            return None
        delay = min(self._base * 2 ** (over - 1), self._max)
        remaining = last_at + delay - now
        return remaining if remaining > 0 else None

    def failed(self, email: str, address: str) -> None:
        account = _key(email)
        if self._shared is not None:
            self._shared.record(account, address, int(self._clock() * 1000))
            return
        with self._lock:
            now = self._clock()
            pair = self._pairs.pop((account, address), None) or _PairFailures(0, now)
            pair.count, pair.last_at = pair.count + 1, now
            self._pairs[(account, address)] = pair
            failures = self._accounts.pop(account, None) or deque()
            failures.append(now)
            self._trim(failures, now)
            self._accounts[account] = failures
            while len(self._pairs) > self._max_keys:
                self._pairs.popitem(last=False)
            while len(self._accounts) > self._max_keys:
                self._accounts.popitem(last=False)

    def succeeded(self, email: str, address: str) -> None:
        """The right password from this address: its failures on the account are forgiven."""
        if self._shared is not None:
            self._shared.forgive(_key(email), address)
            return
        with self._lock:
            self._pairs.pop((_key(email), address), None)

    def _account_is_hot(self, account: str, now: float) -> bool:
        failures = self._accounts.get(account)
        if failures is None:
            return False
        self._trim(failures, now)
        return len(failures) > self._account_limit

    def _trim(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self._account_window:
            failures.popleft()
        while len(failures) > self._account_limit + 1:  # more tells nothing new
            failures.popleft()


def _key(email: str) -> str:
    return email.strip().lower()
