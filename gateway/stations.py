"""Provisioning stations on the broker: ``smartcharge stations add|list|revoke`` and the API.

:class:`StationProvisioner` writes a station's credentials to the database (the source of
truth), then writes the broker's files again from it (``gateway.broker_accounts``) and signals
a running embedded broker to reload them. The password is generated here, returned once and
never stored in clear (only its Mosquitto-format hash). The CSMS's own broker account is part of
every regeneration (its password file is made on first use).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway import broker_accounts as accounts
from storage import DuplicateError, StationCredential, Storage, open_storage

__all__ = ["ProvisionedStation", "StationProvisioner", "main"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionedStation:
    station_id: str
    name: str
    password: str  # shown once
    broker_reloaded: bool


class StationProvisioner:
    """Credentials in ``storage``; the broker files in ``<csms_data_dir>/mqtt``
    (``csms_data_dir=None``: the database only, no broker files: tests of the API)."""

    def __init__(self, storage: Storage, csms_data_dir: Path | None) -> None:
        self.storage = storage
        self.csms_data_dir = csms_data_dir
        self.auth_dir = None if csms_data_dir is None else accounts.auth_dir_for(csms_data_dir)

    def add(self, station_id: str, name: str | None = None) -> ProvisionedStation:
        """Raises ``ValueError`` for a bad id, :class:`storage.DuplicateError` if it exists."""
        accounts.check_station_id(station_id)
        password = accounts.new_password()
        self.storage.station_credentials.add(
            station_id, name or station_id, accounts.hash_password(password)
        )
        reloaded = self.sync()
        return ProvisionedStation(
            station_id=station_id,
            name=name or station_id,
            password=password,
            broker_reloaded=reloaded,
        )

    def ensure(self, station_id: str, password_file: Path) -> bool:
        """Provision ``station_id`` unless it is active and ``password_file`` exists; write the
        password to that file (0600). True if it provisioned (then call :meth:`sync`)."""
        current = self.storage.station_credentials.get(station_id)
        if current is not None and current.active and password_file.exists():
            password = accounts.read_password_file(password_file)
            if accounts.verify_password(password, current.password_hash):
                return False
        if current is not None and current.active:
            self.storage.station_credentials.revoke(station_id)
        password = accounts.new_password()
        self.storage.station_credentials.add(
            station_id, station_id, accounts.hash_password(password)
        )
        accounts.write_secret(password_file, password + "\n")
        return True

    def revoke(self, station_id: str) -> bool:
        revoked = self.storage.station_credentials.revoke(station_id)
        if revoked:
            self.sync()
        return revoked

    def list(self) -> list[StationCredential]:
        return self.storage.station_credentials.list()

    def csms_password_file(self) -> Path:
        if self.csms_data_dir is None:
            raise ValueError("this provisioner has no data dir")
        return accounts.ensure_csms_password(self.csms_data_dir)

    def sync(self) -> bool:
        """Write ``passwd`` and ``acl`` again from the database; signal the running broker.
        True if a broker was signalled."""
        if self.auth_dir is None:
            return False
        csms_password = accounts.read_password_file(self.csms_password_file())
        gateway_file = accounts.ensure_gateway_password(self.csms_password_file().parent)
        users = accounts.internal_users(csms_password, accounts.read_password_file(gateway_file))
        users += [
            (c.station_id, c.password_hash)
            for c in self.storage.station_credentials.list(include_revoked=False)
        ]
        accounts.write_auth_files(self.auth_dir, users)
        return accounts.signal_broker(self.auth_dir)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smartcharge stations", description="Station credentials on the MQTT broker"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./var/csms"),
        help="the CSMS's data dir, as for 'smartcharge csms' (default ./var/csms, what"
        " 'smartcharge up' uses); the broker's files go to <data-dir>/mqtt",
    )
    p.add_argument(
        "--db-url",
        default=os.environ.get("SMARTCHARGE_DB_URL"),
        help="postgresql://... (default: SQLite in the data dir; env SMARTCHARGE_DB_URL)",
    )
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="provision a station; prints its password once")
    add.add_argument("station_id")
    add.add_argument("--name", default=None)
    add.add_argument(
        "--ocpp",
        action="store_true",
        help="an OCPP 1.6J charge point: also print how it connects (docs/ocpp.md)",
    )
    sub.add_parser("list", help="every station with credentials")
    revoke = sub.add_parser("revoke", help="revoke a station's credentials")
    revoke.add_argument("station_id")
    sub.add_parser("sync", help="write the broker's password file and ACL again")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    storage = open_storage(args.db_url, data_dir=args.data_dir)
    try:
        provisioner = StationProvisioner(storage, args.data_dir.resolve())
        if args.action == "add":
            try:
                done = provisioner.add(args.station_id, args.name)
            except (ValueError, DuplicateError) as exc:
                print(f"smartcharge stations: {exc}", file=sys.stderr)
                return 1
            print(f"station {done.station_id} provisioned; MQTT user {done.station_id}")
            print(f"password (shown once): {done.password}")
            if args.ocpp:
                print(
                    f"OCPP 1.6J: ws://HOST:OCPP_PORT/ocpp/{done.station_id}, subprotocol"
                    f" ocpp1.6, HTTP Basic user {done.station_id} with this password"
                    " (security profile 1)"
                )
            if not done.broker_reloaded:
                print("(no running embedded broker was found to reload)")
        elif args.action == "list":
            for c in provisioner.list():
                state = "active" if c.active else f"revoked at {c.revoked_at}"
                print(f"{c.station_id}\t{c.name}\t{state}")
        elif args.action == "revoke":
            if not provisioner.revoke(args.station_id):
                print(f"smartcharge stations: no active credentials for {args.station_id}")
                return 1
            print(f"station {args.station_id} revoked")
        else:
            provisioner.sync()
        return 0
    finally:
        storage.close()


if __name__ == "__main__":
    sys.exit(main())
