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
address cannot spray guesses over many accounts. State is in memory, per gateway process,
bounded by ``max_keys`` (the least recently failed pairs and accounts are forgotten first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.ratelimit import SlidingWindowLimiter

__all__ = ["LoginGuard"]


@dataclass(slots=True)
class _PairFailures:
    count: int
    last_at: float


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
    ) -> None:
        self.per_address = per_address
        self._free = free_failures
        self._base = base_delay_s
        self._max = max_delay_s
        self._account_limit = account_failures
        self._account_window = account_window_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._pairs: OrderedDict[tuple[str, str], _PairFailures] = OrderedDict()
        self._accounts: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, email: str, address: str) -> float | None:
        """None if this attempt may go ahead, else the seconds to wait (``Retry-After``)."""
        wait = self.per_address.hit(address)
        if wait is not None:
            return wait
        account = _key(email)
        with self._lock:
            now = self._clock()
            pair = self._pairs.get((account, address))
            if pair is None:
                return None
            free = 0 if self._account_is_hot(account, now) else self._free
            over = pair.count - free
            if over <= 0:
                return None
            delay = min(self._base * 2 ** (over - 1), self._max)
            remaining = pair.last_at + delay - now
            return remaining if remaining > 0 else None

    def failed(self, email: str, address: str) -> None:
        account = _key(email)
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
