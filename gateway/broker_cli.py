"""``smartcharge broker``: the embedded broker in the foreground (``python -m gateway.broker``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from gateway.broker import (
    DEFAULT_AUTH_DIR,
    DEFAULT_DATA_DIR,
    BrokerError,
    EmbeddedBroker,
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``smartcharge broker``: run the embedded broker in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="smartcharge broker",
        description="Run the embedded MQTT broker on loopback (Mosquitto if installed, else amqtt)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="TCP port (default: 1883, or a free one if taken)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"config, persistence and log directory (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--kind", choices=("auto", "mosquitto", "amqtt"), default="auto")
    parser.add_argument(
        "--auth-dir",
        type=Path,
        default=DEFAULT_AUTH_DIR,
        help="password file and ACL written by 'smartcharge stations' (default:"
        f" {DEFAULT_AUTH_DIR}, what 'smartcharge up' and 'smartcharge stations' use)",
    )
    parser.add_argument(
        "--anonymous",
        action="store_true",
        help="let any client in with no ACL (never on a network: for tests and experiments)",
    )
    parser.add_argument(
        "--tls-port", type=int, default=None, help="also listen with TLS on this port (0: free)"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            broker = EmbeddedBroker(
                port=args.port,
                data_dir=args.data_dir,
                prefer=args.kind,
                auth_dir=None if args.anonymous else args.auth_dir,
                tls_port=args.tls_port,
            )
            broker.start()
        except BrokerError as exc:
            print(f"smartcharge broker: {exc}", file=sys.stderr, flush=True)
            return 1
        print(f"{broker.kind} broker listening on {broker.url}", flush=True)
        if broker.tls_url is not None:
            print(f"TLS listener on {broker.tls_url} (CA: {broker.ca_file})", flush=True)
        if broker.auth_dir is not None:
            print(f"clients authenticate against {broker.auth_dir}", flush=True)
        print(f"log: {broker.log_path}", flush=True)
        try:
            # Wake up twice a second to notice a broker that died on its own.
            while not stop.wait(0.5):
                if not broker.running:
                    print(
                        f"smartcharge broker: the {broker.kind} broker exited unexpectedly; "
                        f"{broker._log_tail()}",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
        finally:
            code = broker.stop()
        print(f"{broker.kind} broker stopped (exit code {code})", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
