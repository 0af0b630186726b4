"""Sign-up confirmation and password reset by mail, answering alike for every address.

With mail configured (``--smtp-url``), sign-up and reset never tell a caller whether an
email has an account: both answer 202, and only the mailbox's owner learns the rest.

- **Sign-up**, new address: an *unconfirmed* driver account and a "confirm your address"
  link. Unconfirmed accounts cannot log in (403 after the right password): otherwise anyone
  could squat an address, and its owner would find an account someone else holds the
  password of. Signing up again for an unconfirmed address sends a fresh link.
- **Sign-up**, confirmed address: a "you already have an account; reset your password here"
  mail with a reset link. The password is hashed either way, so timing tells nothing either.
- **Reset**: a reset link if the address has an account, nothing otherwise.
- **Links** carry single-use random tokens (reset 1 h, confirmation 24 h) of which only the
  SHA-256 digest is stored (``storage.AccountTokenStore``). Setting a new password through a
  reset link confirms the address, voids the other reset links and revokes every refresh
  token of the account (a thief's sessions end with the reset).
- Mails per address are limited (``per_email``): beyond it the answer is the same, unsent.

Accounts made without mail (before it was configured, by operators, demo users) are
confirmed. Runs on gunicorn's request threads; sending happens on the mailer's thread.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import argon2

from gateway.auth_model import check_password_policy, normalize_email
from gateway.mail import Mailer
from gateway.ratelimit import SlidingWindowLimiter
from storage import DuplicateError, LinkPurpose
from storage.errors import InvalidEmail, InvalidLink

__all__ = ["AccountMail"]

log = logging.getLogger(__name__)

RESET_TTL_S = 3600
CONFIRM_TTL_S = 24 * 3600


class AccountMail:
    """The mailed account flows on SQL storage (``users``, ``account_tokens``, refresh
    tokens) with a :class:`Mailer`; links point at ``{public_url}/app#...``."""

    def __init__(
        self,
        storage: Any,
        mailer: Mailer,
        *,
        public_url: str,
        hasher: argon2.PasswordHasher,
        per_email: SlidingWindowLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._users = storage.users
        self._tokens = storage.account_tokens
        self._refresh_tokens = storage.refresh_tokens
        self._mailer = mailer
        self._public_url = public_url.rstrip("/")
        self._hasher = hasher
        self._per_email = per_email or SlidingWindowLimiter(5, 3600.0)
        self._clock = clock

    def sign_up(self, email: str, password: str) -> None:
        """Create an unconfirmed driver and mail a link, or mail the owner of a taken one."""
        address = normalize_email(email)
        check_password_policy(password)
        password_hash = self._hasher.hash(password)  # also for a taken address: same timing
        user = self._users.by_email(address)
        if user is None:
            try:
                user = self._users.create(address, password_hash, "driver", confirmed=False)
            except DuplicateError:  # a concurrent sign-up won
                user = self._users.by_email(address)
                if user is None:
                    raise
        if not self._may_mail(address):
            return
        if user.confirmed_at is None:
            self._mail_confirmation(address, user.id)
        else:
            self._mail_reset(address, user.id, already=True)

    def request_reset(self, email: str) -> None:
        try:
            address = normalize_email(email)
        except InvalidEmail:
            return  # not an address: nobody to mail, and the same answer
        user = self._users.by_email(address)
        if user is not None and self._may_mail(address):
            self._mail_reset(address, user.id, already=False)

    def reset(self, token: str, password: str) -> str:
        """Set a new password through a reset link; returns the account's email."""
        check_password_policy(password)
        now = self._now_ms()
        user_id = self._tokens.spend(_digest(token), LinkPurpose.RESET, now)
        user = None if user_id is None else self._users.get(user_id)
        if user is None:
            raise InvalidLink()
        self._users.set_password_hash(user.id, self._hasher.hash(password))
        self._users.confirm(user.id, now)  # the link proved the mailbox is theirs
        self._tokens.spend_all(user.id, LinkPurpose.RESET, now)
        self._refresh_tokens.revoke_user(user.id, now)
        log.info("password of user %s reset by mail", user.id)
        return str(user.email)

    def confirm(self, token: str) -> None:
        now = self._now_ms()
        user_id = self._tokens.spend(_digest(token), LinkPurpose.CONFIRM, now)
        if user_id is None:
            raise InvalidLink()
        self._users.confirm(user_id, now)

    def _may_mail(self, address: str) -> bool:
        if self._per_email.hit(address) is None:
            return True
        log.warning("not mailing %s again so soon (mail limit per address)", address)
        return False

    def _mail_confirmation(self, address: str, user_id: str) -> None:
        link = self._link(user_id, LinkPurpose.CONFIRM, CONFIRM_TTL_S)
        self._send(
            address,
            "Confirm your email address",
            "Welcome to smartcharge. Confirm that this address is yours to start using"
            f" your account (the link works once, for 24 hours):\n\n{link}\n\n"
            "If you did not sign up, ignore this mail.",
        )

    def _mail_reset(self, address: str, user_id: str, *, already: bool) -> None:
        link = self._link(user_id, LinkPurpose.RESET, RESET_TTL_S)
        opening = (
            "Someone (you?) tried to sign up with this address, but you already have an"
            " account. Forgot your password? Reset it here"
            if already
            else "To choose a new password, follow this link"
        )
        self._send(
            address,
            "You already have an account" if already else "Reset your password",
            f"{opening} (it works once, for an hour):\n\n{link}\n\n"
            "If you did not ask for this, ignore this mail: your password stays as it is.",
        )

    def _link(self, user_id: str, purpose: LinkPurpose, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens.add(_digest(token), user_id, purpose, self._now_ms() + ttl_s * 1000)
        # A fragment never reaches a server's logs nor a Referer header.
        return f"{self._public_url}/app#{purpose}={token}"

    def _send(self, address: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["To"] = address
        message["Subject"] = subject
        message.set_content(text)
        self._mailer.send(message)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
