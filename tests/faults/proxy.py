"""A TCP fault proxy between MQTT clients and the broker, switched at run time (tests only).

    proxy = FaultProxy("127.0.0.1", broker_port).start()
    station connects to proxy.url (mqtt://127.0.0.1:<free port>)
    proxy.blackhole()     # a cut cable: sockets stay open, bytes vanish both ways
    proxy.pass_through()  # cable restored
    proxy.reset()         # every connection closed with a TCP RST
    proxy.close()

Modes, and what each does to the connections it carries:

- ``pass``: bytes are forwarded both ways as they arrive; a close on one side closes the other.
- ``blackhole``: every byte read from either side is dropped, nothing is written, closes are not
  passed on (neither peer hears of the other: no FIN, no RST), and new connections are accepted
  and blackholed the same way. Every connection alive during a blackhole is *tainted*: bytes
  of its stream are lost, so it can never carry MQTT again.
- back to ``pass``: tainted connections are reset, as a restored cable would have the peers
  answer a stale stream with RST; new connections pass.
- ``reset()``: every current connection is closed with RST (``SO_LINGER`` 0); the mode is
  unchanged.

Thread map: one daemon thread runs a :mod:`selectors` loop that owns every socket. The
public methods run on the caller's thread: they queue a change, wake the loop through a
socket pair, and return once the loop has applied it, so a test knows that from the return on
no byte passes (``blackhole``) or that the resets were sent (``reset``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["FaultProxy", "ProxyMode"]

log = logging.getLogger(__name__)

_CHUNK = 65_536
_APPLY_TIMEOUT_S = 5.0


class ProxyMode(enum.StrEnum):
    PASS = "pass"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)
class _Pipe:
    """One proxied connection: the client's socket, the broker's, and what each still owes."""

    client: socket.socket
    upstream: socket.socket
    tainted: bool = False
    to_client: bytearray = field(default_factory=bytearray)
    to_upstream: bytearray = field(default_factory=bytearray)

    def peer_of(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client

    def outgoing(self, sock: socket.socket) -> bytearray:
        """The bytes waiting to be written to ``sock``."""
        return self.to_client if sock is self.client else self.to_upstream


class FaultProxy:
    """Listens on a free loopback port and forwards to ``(host, port)``; see the module doc."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._changes: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._pipes: dict[socket.socket, _Pipe] = {}
        self._mode = ProxyMode.PASS
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.port}")
        self._closing = False
        self.accepted = 0
        """Connections accepted so far (all modes)."""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    def start(self) -> FaultProxy:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self

    # ------------------------------------------------------------------ caller's thread

    def blackhole(self) -> None:
        """From the return on, no byte passes either way and no close is passed on."""
        self._apply("blackhole")

    def pass_through(self) -> None:
        """Forward again; connections that lived through a blackhole are reset."""
        self._apply("pass")

    def reset(self) -> None:
        """Close every current connection with a TCP RST, both sides."""
        self._apply("reset")

    def close(self) -> None:
        """Stop the loop and close every socket (idempotent)."""
        if self._thread.is_alive():
            self._apply("close")
            self._thread.join(timeout=_APPLY_TIMEOUT_S)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _apply(self, change: str) -> None:
        done = threading.Event()
        self._changes.put((change, done))
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"x")
        if not done.wait(_APPLY_TIMEOUT_S):
            raise TimeoutError(f"the fault proxy did not apply {change!r}")

    # ------------------------------------------------------------------ proxy thread

    def _run(self) -> None:
        while not self._closing:
            for key, events in self._selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._apply_changes()
                else:
                    self._serve(key.fileobj, events)  # type: ignore[arg-type]
        for pipe in set(self._pipes.values()):
            self._drop(pipe, abort=False)

    def _apply_changes(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while True:
            try:
                change, done = self._changes.get_nowait()
            except queue.Empty:
                return
            pipes = set(self._pipes.values())
            if change == "blackhole":
                self._mode = ProxyMode.BLACKHOLE
                for pipe in pipes:
                    pipe.tainted = True
                    pipe.to_client.clear()
                    pipe.to_upstream.clear()
                    self._watch(pipe)
            elif change == "pass":
                self._mode = ProxyMode.PASS
                for pipe in pipes:
                    if pipe.tainted:
                        self._drop(pipe, abort=True)
            elif change == "reset":
                for pipe in pipes:
                    self._drop(pipe, abort=True)
            elif change == "close":
                self._closing = True
            done.set()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        try:
            upstream = socket.create_connection(self.target, timeout=_APPLY_TIMEOUT_S)
        except OSError as exc:
            log.warning("fault proxy: cannot reach %s:%d: %s", *self.target, exc)
            _abort(client)
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = _Pipe(client, upstream, tainted=self._mode is ProxyMode.BLACKHOLE)
        self._pipes[client] = self._pipes[upstream] = pipe
        self._selector.register(client, selectors.EVENT_READ, pipe)
        self._selector.register(upstream, selectors.EVENT_READ, pipe)

    def _serve(self, sock: socket.socket, events: int) -> None:
        pipe = self._pipes.get(sock)
        if pipe is None:
            return
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(_CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":  # closed by this side
                if pipe.tainted:  # a cut cable passes no FIN: the peer hears nothing
                    self._forget(sock, pipe)
                else:
                    self._drop(pipe, abort=False)
                return
            if data and not pipe.tainted:
                peer = pipe.peer_of(sock)
                pipe.outgoing(peer).extend(data)
                self._flush(peer, pipe)  # at once: most writes fit in the socket's buffer
        if events & selectors.EVENT_WRITE and not pipe.tainted and sock in self._pipes:
            self._flush(sock, pipe)
        self._watch(pipe)

    def _flush(self, sock: socket.socket, pipe: _Pipe) -> None:
        pending = pipe.outgoing(sock)
        if not pending or sock not in self._pipes:
            return
        try:
            sent = sock.send(pending)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pipe, abort=False)
            return
        del pending[:sent]

    def _watch(self, pipe: _Pipe) -> None:
        """Ask for writability only where bytes wait (never on a tainted pipe)."""
        for sock in (pipe.client, pipe.upstream):
            if sock not in self._pipes:
                continue
            mask = selectors.EVENT_READ
            if pipe.outgoing(sock) and not pipe.tainted:
                mask |= selectors.EVENT_WRITE
            self._selector.modify(sock, mask, pipe)

    def _forget(self, sock: socket.socket, pipe: _Pipe) -> None:
        """Close one side only (the other keeps waiting, as behind a cut cable)."""
        self._pipes.pop(sock, None)
        self._selector.unregister(sock)
        sock.close()

    def _drop(self, pipe: _Pipe, *, abort: bool) -> None:
        for sock in (pipe.client, pipe.upstream):
            if self._pipes.pop(sock, None) is None:
                continue
            self._selector.unregister(sock)
            if abort:
                _abort(sock)
            else:
                sock.close()


def _abort(sock: socket.socket) -> None:
    """Close with RST rather than FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
