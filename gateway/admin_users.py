"""``smartcharge admin`` commands on accounts (local-only: they open the CSMS's database).

- ``create-operator EMAIL``: an operator account;
- ``disable-user EMAIL``: locked out at once: no login, no refresh, and no write request with
  a token issued before (the user's token version is bumped); ``enable-user`` lets the
  account log in again (its old tokens stay dead);
- ``delete-user EMAIL``: a soft delete (``storage.UserStore.delete``): the account is
  disabled and its email and password scrubbed, the row stays so its sessions and
  reservations keep their driver. A session running at that moment goes on and is
  recorded; an operator can stop it (``smartcharge admin stop EVSE``).

These never remove a ``users`` row: a row removed under a running session would make the
session's row unwritable (a foreign-key error), and the car would charge unrecorded.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway.admin_client import AdminError
from gateway.admin_output import csms_dir, emit

__all__ = ["USER_COMMANDS", "add_user_commands", "open_storage_for_writing"]


def add_user_commands(sub: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """The account commands' parsers (``sub``: the ``admin`` subparsers)."""
    p = sub.add_parser(
        "create-operator", parents=parents, help="create an operator account (local-only)"
    )
    p.add_argument("email")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin, not a prompt"
    )
    for name, text in (
        ("disable-user", "lock an account out at once: its tokens stop working (local-only)"),
        ("enable-user", "let a disabled account log in again (local-only)"),
        ("delete-user", "delete an account; its sessions stay recorded (local-only)"),
    ):
        sub.add_parser(name, parents=parents, help=text).add_argument("email")


def cmd_create_operator(args: argparse.Namespace) -> None:
    from gateway.auth import LocalAuthenticator, load_or_create_secret
    from storage import DuplicateError
    from storage.errors import AuthError

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.email}: ")
        if getpass.getpass("again: ") != password:
            raise AdminError("the passwords differ")
    storage = open_storage_for_writing(args)
    try:
        auth = LocalAuthenticator(
            storage.users,
            storage.refresh_tokens,
            secret=load_or_create_secret(csms_dir(args.data_dir) / "secret.key"),
            duplicate_error=DuplicateError,
        )
        try:
            who = auth.create_user(args.email, password, "operator")
        except AuthError as exc:
            raise AdminError(str(exc)) from None
    finally:
        storage.close()
    data = {"id": who.user_id, "email": who.email, "role": who.role}
    emit(args, data, f"created operator {who.email} ({who.user_id})")


def _account_command(verb: str, done: str) -> Callable[[argparse.Namespace], None]:
    """``verb`` is the :class:`storage.UserStore` method (``disable``, ``enable``, ``delete``)."""

    def command(args: argparse.Namespace) -> None:
        storage = open_storage_for_writing(args)
        try:
            user = storage.users.by_email(args.email)
            if user is None:
                raise AdminError(f"no account for {args.email}")
            if not getattr(storage.users, verb)(user.id):
                raise AdminError(f"{args.email} cannot be {done}: it already is, or was deleted")
        finally:
            storage.close()
        emit(args, {"id": user.id, "email": user.email, verb: True}, f"{done} {user.email}")

    return command


def open_storage_for_writing(args: argparse.Namespace) -> Any:
    """Like the CSMS: a fresh data dir gets its database (the CSMS will find the account)."""
    from storage import StorageError, open_storage

    directory = csms_dir(args.data_dir)
    if not directory.is_dir():
        raise AdminError(f"no CSMS data dir at {directory}: give --data-dir")
    try:
        return open_storage(args.db_url, data_dir=directory)
    except StorageError as exc:
        raise AdminError(f"cannot open the CSMS database: {exc}") from None


USER_COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "create-operator": cmd_create_operator,
    "disable-user": _account_command("disable", "disabled"),
    "enable-user": _account_command("enable", "enabled"),
    "delete-user": _account_command("delete", "deleted"),
}
