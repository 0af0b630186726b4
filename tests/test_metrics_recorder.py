"""Metrics: the recorder's batching (MetricsRecorder): a second of samples in one insert, early
writes when the batch is full, a failed batch kept for the next write, downsampling on its
timer, and its subscriber writing on a tick and at stop."""

from __future__ import annotations

from collections.abc import Iterable

import pykka

from actors.evse_state import EvseState
from actors.listeners import ListenerHost, Tick
from actors.messages import EvseChanged
from actors.metrics_recorder import MetricsRecorder, SampleRetention
from protocol import EvseDescriptor, EvseId, EvseStatus, StationId
from storage import EvseSample

pytest_plugins = ("tests.storage_fixtures",)


# -- MetricsRecorder -----------------------------------------------------------------------------


class CountingStore:
    """A fake MetricsStore: counts ``add_many`` calls (each one ``insert_many``)."""

    def __init__(self) -> None:
        self.batches: list[list[EvseSample]] = []
        self.downsampled: list[tuple[int, int]] = []

    def add_many(self, samples: Iterable[EvseSample]) -> int:
        self.batches.append(list(samples))
        return len(self.batches[-1])

    def downsample(self, older_than_ms: int, bucket_ms: int) -> int:
        self.downsampled.append((older_than_ms, bucket_ms))
        return 0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def changed(evse_id: str, power_w: float) -> EvseChanged:
    state = EvseState(
        station_id=StationId("st"),
        descriptor=EvseDescriptor(id=EvseId(evse_id)),
        status=EvseStatus.CHARGING,
        power_w=power_w,
        energy_wh=power_w / 10,
        soc=50.0,
    )
    return EvseChanged(state=state, effects=())


def test_the_recorder_writes_a_second_of_samples_in_one_insert_many() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    recorder = MetricsRecorder(store, clock_ms=lambda: 1_000, monotonic=monotonic)

    for i in range(300):
        recorder.evse_changed(changed(f"e-{i % 7}", float(i)))
    assert store.batches == []
    monotonic.now += 1.0
    recorder.evse_changed(changed("e-0", 300.0))

    assert len(store.batches) == 1
    assert [s.power_w for s in store.batches[0]] == [float(i) for i in range(301)]
    assert store.batches[0][0] == EvseSample(
        evse_id="st.e-0", ts=1_000, power_w=0.0, energy_wh=0.0, soc=50.0
    )


def test_the_recorder_writes_early_when_the_batch_is_full() -> None:
    store = CountingStore()
    recorder = MetricsRecorder(store, max_batch=500, monotonic=FakeMonotonic())

    for i in range(1_200):
        recorder.evse_changed(changed("e-1", float(i)))

    assert [len(batch) for batch in store.batches] == [500, 500]


class FailingOnceStore(CountingStore):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def add_many(self, samples: Iterable[EvseSample]) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("database down")
        return super().add_many(samples)


def test_the_recorder_keeps_a_failed_batch_for_the_next_write() -> None:
    store = FailingOnceStore()
    recorder = MetricsRecorder(store, monotonic=FakeMonotonic())
    recorder.evse_changed(changed("e-1", 1.0))
    recorder.flush()
    recorder.evse_changed(changed("e-1", 2.0))
    recorder.flush()

    assert [[s.power_w for s in batch] for batch in store.batches] == [[1.0, 2.0]]


def test_the_recorder_downsamples_on_its_timer_with_the_configured_retention() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    retention = SampleRetention(raw_s=3600, bucket_s=60, downsample_every_s=300)
    recorder = MetricsRecorder(
        store, retention=retention, clock_ms=lambda: 10_000_000, monotonic=monotonic
    )

    recorder.tick()
    monotonic.now += 299
    recorder.tick()
    monotonic.now += 1
    recorder.tick()

    assert store.downsampled == [(10_000_000 - 3_600_000, 60_000)] * 2


def test_the_recorder_subscriber_writes_on_a_tick_and_what_is_left_when_it_stops() -> None:
    store, monotonic = CountingStore(), FakeMonotonic()
    recorder = MetricsRecorder(store, monotonic=monotonic)
    subscriber = ListenerHost.start([recorder])
    try:
        subscriber.tell(changed("e-1", 1.0))
        monotonic.now += 1.0
        subscriber.ask(Tick(), timeout=5)
        assert [len(b) for b in store.batches] == [1]
        subscriber.tell(changed("e-1", 2.0))
    finally:
        subscriber.stop(timeout=5)
        pykka.ActorRegistry.stop_all()

    assert [len(b) for b in store.batches] == [1, 1]
