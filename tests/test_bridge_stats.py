"""BridgeStats: counted from several threads, none lost."""

from __future__ import annotations

import threading

from actors.bridge import BridgeStats


def test_counts_from_many_threads_add_up() -> None:
    stats = BridgeStats()
    start = threading.Barrier(8)

    def count() -> None:
        start.wait(timeout=10)
        for _ in range(20_000):
            stats.count("acked")
        stats.count("malformed", 3)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert stats.acked == 8 * 20_000
    assert stats.malformed == 8 * 3
    assert stats.messages_in == 0
