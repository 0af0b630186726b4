"""Prometheus metrics of one CSMS, in its own :class:`CollectorRegistry` (never the global one:
a process may run several systems, tests do).

Most values are read at scrape time, on the scraping (gunicorn) thread, from what the system
already keeps: EVSEs by status and open sessions from the :class:`FleetView`, MQTT traffic from
:class:`BridgeStats`, open event streams from the :class:`LiveHub`, restarts from the
:class:`RestartCounter` the supervisor writes.
Only command round trips are recorded as they happen: each EVSE actor calls
:meth:`CsmsMetrics.observe_command` on its own thread when a reply resolves a command, or when
the command times out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors.bridge import BridgeStats
from actors.fleet_view import FleetView
from actors.live import LiveHub
from actors.site import SiteBoard
from protocol import CommandName, EvseStatus

__all__ = ["ROUND_TRIP_BUCKETS_S", "CsmsMetrics", "RestartCounter"]

log = logging.getLogger(__name__)

ROUND_TRIP_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RestartCounter:
    """How many EVSE actors the supervisor restarted: the supervisor writes it (on its
    thread), the scrape reads it (on the scraping thread). No ``ask`` and no reference to
    the supervisor: the composition root hands the same counter to both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def record(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


class _ScrapeTimeCollector:
    """The gauges and counters computed when Prometheus scrapes."""

    def __init__(
        self,
        view: FleetView,
        bridge: BridgeStats,
        hub: LiveHub,
        restarts: RestartCounter,
    ) -> None:
        self._view = view
        self._bridge = bridge
        self._hub = hub
        self._restarts = restarts

    def describe(self) -> Iterator[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        by_status = GaugeMetricFamily(
            "smartcharge_evses", "EVSEs by status, as the CSMS last heard", labels=["status"]
        )
        sessions = GaugeMetricFamily("smartcharge_sessions_active", "EVSEs with a session open")
        streams = GaugeMetricFamily("smartcharge_sse_streams", "Server-Sent-Event streams open")
        restarts = CounterMetricFamily(
            "smartcharge_actor_restarts", "EVSE actors restarted by the supervisor"
        )
        traffic = {
            name: CounterMetricFamily(f"smartcharge_mqtt_messages_{name}", doc)
            for name, doc in (
                ("received", "MQTT messages received by the CSMS"),
                ("sent", "MQTT messages published by the CSMS"),
                ("malformed", "MQTT messages received and dropped as malformed"),
                ("future_stamped", "MQTT reports refused: stamped too far in the future"),
                ("wrong_version", "MQTT messages refused: another protocol version"),
            )
        }
        if not empty:
            evses = self._view.evses()
            counts = dict.fromkeys((str(s) for s in EvseStatus), 0)
            for evse in evses:
                counts[str(evse.state.status)] += 1
            for status, count in counts.items():
                by_status.add_metric([status], count)
            sessions.add_metric([], sum(1 for e in evses if e.state.session_open))
            streams.add_metric([], self._hub.stream_count)
            restarts.add_metric([], self._restarts.count)
            traffic["received"].add_metric([], self._bridge.messages_in)
            traffic["sent"].add_metric([], self._bridge.messages_out)
            traffic["malformed"].add_metric([], self._bridge.malformed)
            traffic["future_stamped"].add_metric([], self._bridge.future_stamped)
            traffic["wrong_version"].add_metric([], self._bridge.wrong_version)
        yield from (by_status, sessions, streams, restarts, *traffic.values())


class _SiteCollector:
    """Smart charging, per site: the limit in force, what is allocated, what is measured."""

    def __init__(self, board: SiteBoard) -> None:
        self._board = board

    def describe(self) -> Iterator[Metric]:
        return self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        doc = {
            "limit": "The site's power limit in force (W)",
            "allocated": "Power allocated to the site's EVSEs (W)",
            "measured": "Power the site's EVSEs last reported drawing (W)",
        }
        gauges = {
            k: GaugeMetricFamily(f"smartcharge_site_{k}_watts", d, labels=["site"])
            for k, d in doc.items()
        }
        commands = CounterMetricFamily(
            "smartcharge_site_set_limit_commands", "set_limit commands sent", labels=["site"]
        )
        if not empty:
            for site in self._board.all():
                gauges["limit"].add_metric([site.id], site.limit_w)
                gauges["allocated"].add_metric([site.id], site.allocated_w)
                gauges["measured"].add_metric([site.id], site.measured_w)
                commands.add_metric([site.id], site.commands_sent)
        yield from (*gauges.values(), commands)


class CsmsMetrics:
    """The registry of one CSMS and the metrics recorded as they happen."""

    def __init__(
        self,
        *,
        view: FleetView,
        bridge: BridgeStats,
        hub: LiveHub,
        restarts: RestartCounter | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._round_trip = Histogram(
            "smartcharge_command_round_trip_seconds",
            "From sending a command to the station until its reply resolved it",
            ["command"],
            buckets=ROUND_TRIP_BUCKETS_S,
            registry=self.registry,
        )
        self._timeouts = Counter(
            "smartcharge_command_timeouts",
            "Commands the station did not answer in time",
            ["command"],
            registry=self.registry,
        )
        self.registry.register(
            _ScrapeTimeCollector(view, bridge, hub, restarts or RestartCounter())
        )

    def watch_sites(self, board: SiteBoard) -> None:
        """Expose the sites' limits and power (smart charging) from ``board``."""
        self.registry.register(_SiteCollector(board))

    def observe_command(self, command: CommandName, seconds: float | None) -> None:
        """A command's round trip; ``None``: it timed out. Runs on the EVSE actor's thread."""
        if seconds is None:
            self._timeouts.labels(command=str(command)).inc()
        else:
            self._round_trip.labels(command=str(command)).observe(max(0.0, seconds))

    def exposition(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE_LATEST``), for ``/metrics``."""
        return generate_latest(self.registry)
