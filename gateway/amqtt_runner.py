"""Run amqtt's MQTT 3.1.1 broker in its own process (the zero-setup fallback broker).

Started by :class:`gateway.broker.EmbeddedBroker` as
``python -m gateway.amqtt_runner --host 127.0.0.1 --port P``; not meant to be imported by the CSMS
itself (``docs/facts.md``, amqtt: in the same process as its clients it loses QoS 1
deliveries).

Configuration (amqtt 0.12.1, ``amqtt.contexts.BrokerConfig``): one TCP listener bound to the
given host only (amqtt binds ``0.0.0.0:1883`` unless told otherwise), no websocket listener, and
only the anonymous-auth plugin: naming ``plugins`` explicitly replaces amqtt's defaults, which
would also load the ``$SYS`` plugin and the per-packet/per-event logging plugins.

With ``--auth-dir`` clients must authenticate and stay on their own topics
(``gateway.amqtt_acl``); with ``--tls-port`` it also listens with TLS.

The process stops cleanly on SIGTERM/SIGINT and, with ``--exit-on-stdin-eof``, when its stdin
reaches end of file, i.e. when the parent that holds the other end of the pipe dies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

LOG_FORMAT = "%(asctime)s amqtt[%(process)d] %(levelname)s %(name)s: %(message)s"


def build_config(
    host: str,
    port: int,
    *,
    auth_dir: str | None = None,
    tls_port: int | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> dict[str, Any]:
    """The amqtt 0.12.1 broker configuration: loopback only, no $SYS; anonymous without an
    ``auth_dir``, else our password-file and ACL plugins (``gateway.amqtt_acl``)."""
    listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{host}:{port}"}}
    if tls_port is not None:
        listeners["tls"] = {
            "type": "tcp",
            "bind": f"{host}:{tls_port}",
            "ssl": True,
            "certfile": certfile,
            "keyfile": keyfile,
        }
    plugins: dict[str, Any]
    if auth_dir is None:
        plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    else:
        plugins = {
            "gateway.amqtt_acl.PasswordFileAuthPlugin": {"auth_dir": auth_dir},
            "gateway.amqtt_acl.StationAclPlugin": {},
        }
    return {"listeners": listeners, "plugins": plugins}


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches EOF (the parent died or closed the pipe).

    A reader on the event loop, not a thread: a daemon thread blocked in ``sys.stdin.read``
    makes the interpreter abort at exit ("could not acquire lock ... at interpreter shutdown").
    """
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def on_readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, on_readable)


async def serve(host: str, port: int, *, exit_on_stdin_eof: bool = False, **options: Any) -> int:
    from amqtt.broker import Broker  # imported here: it is slow and only this process needs it

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP = "credentials changed" (as for Mosquitto); our auth plugin rereads the password
    # file when it changes anyway, so there is nothing to do but not to die of it.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    if exit_on_stdin_eof:
        _watch_stdin(loop, stop)

    broker_class = Broker
    if options.get("auth_dir") is not None:
        from gateway.amqtt_acl import authenticate_first_broker

        broker_class = authenticate_first_broker()
    broker = broker_class(build_config(host, port, **options), loop=loop)
    try:
        await broker.start()
    except Exception as exc:
        logging.getLogger(__name__).error(
            "amqtt broker failed to start on %s:%d: %s", host, port, exc
        )
        return 1
    await stop.wait()
    await broker.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.amqtt_runner", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin is closed (the parent holds the write end of a pipe)",
    )
    parser.add_argument("--auth-dir", default=None, help="password file and ACL (secure mode)")
    parser.add_argument("--tls-port", type=int, default=None, help="also listen with TLS here")
    parser.add_argument("--certfile", default=None)
    parser.add_argument("--keyfile", default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    return asyncio.run(
        serve(
            args.host,
            args.port,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
            auth_dir=args.auth_dir,
            tls_port=args.tls_port,
            certfile=args.certfile,
            keyfile=args.keyfile,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
