"""Serve the gateway with gunicorn, the CSMS actors living in the (single) worker.

Threads do not survive a fork, so the actors start in ``post_worker_init`` (in the
worker, after the fork) and stop in ``worker_exit``; ``preload_app`` stays off.
One worker owns the CSMS's persistent MQTT session; its gthread pool serves
requests, which only read the :class:`FleetView` or ``ask`` an EVSE actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from actors.system import CsmsConfig, CsmsSystem
from gateway.app import create_app

__all__ = ["GatewayServer", "serve"]

log = logging.getLogger(__name__)


class GatewayServer(BaseApplication):  # type: ignore[misc,unused-ignore]
    """A gunicorn application whose worker runs one :class:`CsmsSystem`."""

    def __init__(self, options: dict[str, Any], system_factory: Callable[[], CsmsSystem]) -> None:
        self._options = options
        self._system_factory = system_factory
        self._system: CsmsSystem | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        self.cfg.set("preload_app", False)
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens a control socket at one fixed path per user
            # (~/.gunicorn/gunicorn.ctl): two CSMS instances would unlink each other's.
            self.cfg.set("control_socket_disable", True)
        self.cfg.set("post_worker_init", self._post_worker_init)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> Any:
        """Runs in the worker after the fork: build the (not yet started) system and app."""
        self._system = self._system_factory()
        return create_app(self._system, mqtt_connected=self._system.mqtt_connected)

    def _post_worker_init(self, worker: Any) -> None:
        if self._system is not None:
            self._system.start(wait_connected_s=10.0)
            log.info("CSMS actors started in worker %s", worker.pid)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._system is not None:
            self._system.stop()
            log.info("CSMS actors stopped in worker %s", worker.pid)


def serve(
    config: CsmsConfig, *, binds: list[str], threads: int = 8, loglevel: str = "info"
) -> None:
    """Run gunicorn in the foreground until SIGINT/SIGTERM."""
    options = {
        "bind": binds,
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "loglevel": loglevel,
        "accesslog": None,
        "proc_name": "smartcharge-csms",
    }
    GatewayServer(options, lambda: CsmsSystem(config)).run()
