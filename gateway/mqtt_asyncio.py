"""paho MQTT clients driven by an asyncio event loop, with no network thread of their own.

paho's ``loop_start`` gives every client a thread that wakes for each packet and hands it to
the loop with a thread switch; the OCPP translator holds one client per charge point, so at a
thousand charge points that is a thousand threads. :class:`MqttLoopDriver` uses paho's
external event loop API instead (its socket callbacks, ``loop_read``, ``loop_write`` and
``loop_misc``): each client's socket is watched by the asyncio loop, and one timer a second
does every client's keepalive. Callbacks (``on_connect``, ``on_message``, ``on_publish``, ...)
then run on the loop's thread.

Only ``connect``/``reconnect`` may block (the TCP connection and the TLS handshake, up to
paho's connect timeout): call them in a worker thread (:meth:`MqttLoopDriver.reconnect`); the
socket callbacks paho makes there are handed to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Final

import paho.mqtt.client as mqtt

__all__ = ["MISC_INTERVAL_S", "MqttLoopDriver"]

log = logging.getLogger("gateway.mqtt")

MISC_INTERVAL_S: Final = 1.0
"""How often every client's ``loop_misc`` runs (keepalive pings, a silent broker noticed)."""


class MqttLoopDriver:
    """Runs the network side of the paho clients :meth:`attach`\\ ed to it on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread: int | None = None
        self._open: dict[mqtt.Client, Any] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def open_sockets(self) -> int:
        return len(self._open)

    def attach(self, client: mqtt.Client) -> None:
        """Before the client's first connect: its sockets are the loop's from now on."""
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    async def reconnect(self, client: mqtt.Client) -> None:
        """``client.reconnect()`` (after ``connect_async``) in a worker thread: the blocking
        TCP connection and TLS handshake; the CONNECT packet then goes out from the loop.
        Raises ``OSError`` if the broker cannot be reached."""
        if self._loop_thread is None:
            self._loop_thread = threading.get_ident()
        await asyncio.to_thread(client.reconnect)

    def close(self, client: mqtt.Client) -> None:
        """Forget the client's socket (if paho still has one) and close it: for a client that
        did not finish disconnecting in time."""
        sock = self._open.pop(client, None)
        if sock is not None:
            self._forget(sock)
            sock.close()

    # paho's socket callbacks: the loop's thread, or the one connecting ----------------

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch, client, sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # on the loop: before paho closes it (paho calls this first); from a connecting thread
        # only for a socket the loop never watched (reconnect() closes no watched socket)
        self._on_loop(self._unwatch, client, sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._want_write, client, sock)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._on_loop(self._wrote, client, sock)

    # the loop's thread ---------------------------------------------------------------

    def _watch(self, client: mqtt.Client, sock: Any) -> None:  # sock: paho's SocketLike
        if not _is_socket_of(client, sock):
            return  # closed meanwhile
        self._open[client] = sock
        self._loop.add_reader(sock, self._readable, client, sock)
        if self._timer is None:
            self._timer = self._loop.call_later(MISC_INTERVAL_S, self._misc)

    def _unwatch(self, client: mqtt.Client, sock: Any) -> None:
        if self._watches(client, sock):
            del self._open[client]
            self._forget(sock)

    def _watches(self, client: mqtt.Client, sock: Any) -> bool:
        watched: Any = self._open.get(client)
        return watched is not None and watched is sock

    def _forget(self, sock: Any) -> None:
        if sock.fileno() >= 0:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _want_write(self, client: mqtt.Client, sock: Any) -> None:
        if self._watches(client, sock):
            self._loop.add_writer(sock, self._writable, client)
        elif _is_socket_of(client, sock):  # its CONNECT, queued before the socket was watched
            self._watch(client, sock)
            self._loop.add_writer(sock, self._writable, client)

    def _wrote(self, client: mqtt.Client, sock: Any) -> None:
        if self._watches(client, sock):
            self._loop.remove_writer(sock)

    def _readable(self, client: mqtt.Client, sock: Any) -> None:
        try:
            client.loop_read()
            # what the TLS layer already decrypted makes the socket readable no more
            while _is_socket_of(client, sock) and getattr(sock, "pending", _nothing)() > 0:
                client.loop_read()
        except Exception:  # a callback's bug must not stop the loop for every other client
            log.exception("MQTT: error while reading for %s", client._client_id)

    def _writable(self, client: mqtt.Client) -> None:
        try:
            client.loop_write()
        except Exception:
            log.exception("MQTT: error while writing for %s", client._client_id)

    def _misc(self) -> None:
        self._timer = None
        for client in list(self._open):
            try:
                client.loop_misc()
            except Exception:
                log.exception("MQTT: keepalive error for %s", client._client_id)
        if self._open:
            self._timer = self._loop.call_later(MISC_INTERVAL_S, self._misc)


def _is_socket_of(client: mqtt.Client, sock: Any) -> bool:
    current: Any = client.socket()
    return current is not None and current is sock


def _nothing() -> int:
    return 0
