"""``smartcharge gateway``: gateway workers apart from the CSMS node (``docs/node-protocol.md``).

Each gunicorn worker holds no actor: it keeps a replica of the node's read model and its own
event streams (:class:`~gateway.node_client.NodeClient`), reads storage for accounts and
history, and sends the node requests over the broker. Workers share both ports (HTTP reads,
HTTPS writes); a worker that dies (even ``kill -9``) is replaced by gunicorn's arbiter, and
the new one is current as soon as it has subscribed.

On a broker with accounts, a worker connects as one of the gateway accounts
(``csms-gw-1`` .. ``csms-gw-64``: :mod:`gateway.broker_accounts`), the broker tying a client id
to its account. A worker claims its number with a lock file in ``<data dir>/gateway-slots``,
held by the kernel for as long as the process lives, so a replaced worker's number is free
again at once and two live workers never share one (which would make the broker drop one).
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon

from gateway.app import create_app
from gateway.broker_accounts import GATEWAY_SLOTS, GATEWAY_USER
from gateway.mail import SmtpMailer
from gateway.node_client import NodeClient, RemoteCsms
from gateway.server import (
    GatewaySettings,
    WorkerApplication,
    gunicorn_base_options,
    open_accounts,
    open_mail,
)
from protocol.mqtt_settings import MqttSettings
from storage import Storage

__all__ = ["NodeHealth", "claim_slot", "serve_gateways"]

log = logging.getLogger(__name__)

CONNECT_WAIT_S = 10.0


def claim_slot(directory: Path, slots: int = GATEWAY_SLOTS) -> tuple[int, int]:
    """The lowest free slot number (1-based) and the descriptor holding its lock."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for number in range(1, slots + 1):
        fd = os.open(directory / f"{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return number, fd
    raise RuntimeError(f"all {slots} gateway slots are taken (more workers than accounts?)")


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """``/healthz``'s ``mqtt_connected`` for a gateway: the broker reached and the node alive."""

    node: NodeClient

    def is_set(self) -> bool:
        return self.node.connected.is_set() and self.node.node_online.is_set()


class GatewayWorkers(WorkerApplication):
    """A gunicorn application whose workers each run one :class:`NodeClient`."""

    def __init__(
        self, options: dict[str, Any], settings: GatewaySettings, mqtt: MqttSettings
    ) -> None:
        self._settings = settings
        self._mqtt = mqtt
        self._node: NodeClient | None = None
        self._storage: Storage | None = None
        self._slot_fd: int | None = None
        self._mailer: SmtpMailer | None = None
        super().__init__(options)

    def load(self) -> falcon.App:
        """In the worker, after the fork: claim an account, open storage, build the app."""
        mqtt = self._mqtt
        if mqtt.username is not None:
            number, self._slot_fd = claim_slot(self._settings.data_dir / "gateway-slots")
            user = f"{GATEWAY_USER}-{number}"
            mqtt = MqttSettings(
                host=mqtt.host,
                port=mqtt.port,
                username=user,
                password=mqtt.password,
                tls=mqtt.tls,
                ca_file=mqtt.ca_file,
                client_id=user,
            )
        sql, storage, auth = open_accounts(self._settings)
        self._storage = sql
        self._mailer, mail = open_mail(self._settings, storage, auth)
        node = self._node = NodeClient(mqtt, client_id=mqtt.client_id)
        return create_app(
            RemoteCsms(node),
            mqtt_connected=NodeHealth(node),
            auth=auth,
            storage=storage,
            https_base=self._settings.https_base,
            http_base=self._settings.http_base,
            mail=mail,
            csms_data_dir=self._settings.data_dir.resolve(),
            asgi=True,
            threads=self._settings.threads,
            map_tiles=self._settings.map_tiles,
        )

    def _post_worker_init(self, worker: Any) -> None:
        if self._node is not None:
            self._node.start()
            if not self._node.connected.wait(CONNECT_WAIT_S):
                log.warning("gateway %s: broker not reachable yet; still trying", worker.pid)
            log.info("gateway worker %s serving as %s", worker.pid, self._node.client_id)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._node is not None:
            self._node.stop()
        if self._mailer is not None:
            self._mailer.close()
        if self._storage is not None:
            self._storage.close()
        if self._slot_fd is not None:
            os.close(self._slot_fd)


def serve_gateways(settings: GatewaySettings, mqtt: MqttSettings, *, workers: int) -> None:
    """Run ``workers`` gateway workers in the foreground until SIGINT/SIGTERM."""
    options = gunicorn_base_options(settings, workers=workers, name="smartcharge-gateway")
    GatewayWorkers(options, settings, mqtt).run()
