"""Identity and ACL for the amqtt fallback broker: the same rules Mosquitto enforces.

amqtt 0.12.1's own plugins fall short (measured, ``docs/broker-security.md``): its
``FileAuthPlugin`` reads only argon2 and sha512-crypt hashes, not the ``$7$`` lines of our
Mosquitto password file, and does not tie the client id to the user; its
``TopicAccessControlListPlugin`` takes fixed per-user topic lists (no ``%u`` pattern), so every
provisioned station would need its own entries. These two plugins, on amqtt's documented plugin
interface (``BaseAuthPlugin.authenticate``, ``BaseTopicPlugin.topic_filtering``), read the
files of :mod:`gateway.broker_accounts`:

- :class:`PasswordFileAuthPlugin`: a user name and a matching password are required
  (anonymous clients are refused), and the client id must equal the user name (nobody takes the
  CSMS's client id, hence its session). ``passwd`` is read again when it changes (checked at each
  connection: a revoked station is refused at its next connect).
- :class:`StationAclPlugin`: the CSMS's user may use ``smartcharge/#``; a station may publish
  and receive only its own topics (:data:`~gateway.broker_accounts.ACL_PATTERNS`) and subscribe
  only to filters inside them. amqtt asks on PUBLISH, SUBSCRIBE and each delivery (RECEIVE).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from gateway.broker_accounts import (
    ACL_PATTERNS,
    CSMS_USER,
    INTERNAL_USERS,
    NODE_REQUESTS,
    NODE_USER,
    PASSWD,
    verify_password,
)
from protocol import TOPIC_NAMESPACE

__all__ = ["PasswordFileAuthPlugin", "StationAclPlugin", "allowed"]

log = logging.getLogger(__name__)


def _matches(filter_levels: list[str], pattern_levels: list[str], *, subscribe: bool) -> bool:
    """Does a topic (or, when ``subscribe``, a whole topic filter) lie inside the pattern?"""
    if len(filter_levels) != len(pattern_levels):
        return False
    for level, allowed_level in zip(filter_levels, pattern_levels, strict=True):
        if level == "#" or ("#" in level) or ("+" in level and level != "+"):
            return False
        if allowed_level == "+":
            continue  # any single level, '+' included, stays inside
        if level != allowed_level:
            return False
    return True


def allowed(username: str | None, topic: str, action: str, csms_user: str = CSMS_USER) -> bool:
    """The ACL as a pure function: ``action`` is ``"publish"``, ``"subscribe"`` or ``"receive"``."""
    if not username:
        return False
    levels = topic.split("/")
    if username == csms_user:
        return levels[0] == TOPIC_NAMESPACE
    if username == NODE_USER or username in INTERNAL_USERS:  # the node-gateway contract
        node = levels[:2] == ["smartcharge", "node"]
        if username == NODE_USER or action != "publish":
            return node
        return topic == NODE_REQUESTS
    if any(c in username for c in "+#/"):
        return False
    wanted = "write" if action == "publish" else "read"
    for access, pattern in ACL_PATTERNS:
        if access != wanted:
            continue
        pattern_levels = pattern.replace("%u", username).split("/")
        if _matches(levels, pattern_levels, subscribe=action == "subscribe"):
            return True
    return False


class PasswordFileAuthPlugin(BaseAuthPlugin):
    """Authenticate against ``<auth_dir>/passwd`` (Mosquitto's format); client id = user."""

    @dataclass
    class Config:
        auth_dir: str = ""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._path = Path(self._get_config_option("auth_dir", "")) / PASSWD
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}

    def _reload_if_changed(self) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        users = {}
        for line in self._path.read_text(encoding="utf-8").splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and not user.startswith("#"):
                users[user] = hashed
        self._users, self._stamp = users, stamp

    async def authenticate(self, *, session: Any) -> bool:
        self._reload_if_changed()
        username, password = session.username, session.password
        hashed = self._users.get(username or "")
        if not username or password is None or hashed is None:
            log.warning("refused %r: unknown user or no password", session.client_id)
            return False
        if not verify_password(password, hashed):
            log.warning("refused %r: wrong password for %r", session.client_id, username)
            return False
        if session.client_id != username:
            log.warning("refused user %r with client id %r", username, session.client_id)
            return False
        return True


class StationAclPlugin(BaseTopicPlugin):
    """Each station on its own topics; the CSMS on all ``smartcharge/`` topics."""

    @dataclass
    class Config:
        csms_user: str = CSMS_USER

    _ACTIONS = {Action.PUBLISH: "publish", Action.SUBSCRIBE: "subscribe", Action.RECEIVE: "receive"}

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        if session is None or topic is None or action not in self._ACTIONS:
            return False
        csms_user = self._get_config_option("csms_user", CSMS_USER)
        ok = allowed(session.username, topic, self._ACTIONS[action], csms_user)
        if not ok and action != Action.RECEIVE:
            log.warning("denied %s of %r to %r", self._ACTIONS[action], topic, session.username)
        return ok


def authenticate_first_broker() -> type:
    """amqtt's ``Broker`` with authentication moved before any session is touched.

    amqtt 0.12.1 (measured) deletes the session of a clean-session client id, and takes over a
    connected client with that id, *before* it looks at the authentication result: an
    unauthenticated client using the CSMS's client id knocked the CSMS off (and wiped its
    session) even though its own CONNECT was refused. This subclass reads the CONNECT,
    authenticates, and refuses (CONNACK "not authorised", close) before amqtt's own session
    handling runs. Imported lazily: amqtt is slow to import and only its process needs it.
    """
    from amqtt.broker import Broker
    from amqtt.errors import AMQTTError, MQTTError, NoDataError
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.utils import gen_client_id

    class SnapshotDict(dict[str, Any]):
        """amqtt's table of subscriptions, iterated over a snapshot: 0.12.1 iterates it across
        ``await`` points (``_run_broadcast``) while other clients' SUBSCRIBE or session
        deletion change its keys, and the broadcast of that message died with "dictionary
        changed size during iteration" (seen in the fault suite's amqtt log)."""

        def __iter__(self) -> Iterator[str]:
            return iter(list(super().__iter__()))

        def items(self) -> Any:
            return list(super().items())

    class AuthenticateFirstBroker(Broker):
        """amqtt 0.12.1's ``_initialize_client_session`` with authentication first (the rest
        is its code, shortened: the version is pinned below 0.13 in setup.cfg), retained
        messages sent only for a client's own subscriptions, and every message a client
        published (and was acknowledged) before it disconnected still delivered."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._subscriptions = SnapshotDict()

        async def _initialize_client_session(
            self, reader: Any, writer: Any, remote_address: str, remote_port: int
        ) -> tuple[Any, Any]:
            try:
                handler, session = await BrokerProtocolHandler.init_from_connect(
                    reader, writer, self.plugins_manager
                )
            except (AMQTTError, NoDataError) as exc:
                raise AMQTTError(exc) from exc
            except MQTTError:
                await writer.close()
                raise
            if not await self._authenticate(session, None):
                handler.attach(session, reader, writer)
                session.parent = 0
                await handler.mqtt_connack_authorize(False)
                await writer.close()
                raise MQTTError(f"client {session.client_id!r} not authorised")
            if session.clean_session:
                if session.client_id:
                    await self._delete_session(session.client_id)
                else:
                    session.client_id = gen_client_id()
                session.parent = 0
            elif session.client_id in self._sessions:
                existing, _ = self._sessions[session.client_id]
                for name in ("will_flag", "will_message", "will_topic", "will_qos"):
                    setattr(existing, name, getattr(session, name))
                for name in ("keep_alive", "username", "password"):
                    setattr(existing, name, getattr(session, name))
                session = existing
                session.parent = 1
            else:
                session.parent = 0
            delay = self.config.get("timeout-disconnect-delay", 0)
            if session.keep_alive > 0 and isinstance(delay, int):
                session.keep_alive += delay
            return handler, session

        async def _client_message_loop(self, client_session: Any, handler: Any) -> None:
            """amqtt 0.12.1's loop, except at disconnect: it stopped with messages it had
            already acknowledged (PUBACK) still queued, and dropped them. Measured: a client
            that published 1,000 QoS 1 messages and disconnected once all were acknowledged
            had 503 delivered. Here the queue is delivered, in order, before the disconnect
            is handled (the will, if any, comes after them)."""
            disconnect_waiter = asyncio.ensure_future(handler.wait_disconnect())
            subscribe_waiter = asyncio.ensure_future(handler.get_next_pending_subscription())
            unsubscribe_waiter = asyncio.ensure_future(handler.get_next_pending_unsubscription())
            wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
            waiters = [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver]
            try:
                while True:
                    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    if disconnect_waiter in done:
                        await self._deliver_queued(client_session, handler, wait_deliver)
                        await self._handle_disconnect(client_session, handler, disconnect_waiter)
                        return
                    if subscribe_waiter in done:
                        await self._handle_subscription(client_session, handler, subscribe_waiter)
                        subscribe_waiter = asyncio.ensure_future(
                            handler.get_next_pending_subscription()
                        )
                    if unsubscribe_waiter in done:
                        await self._handle_unsubscription(
                            client_session, handler, unsubscribe_waiter
                        )
                        unsubscribe_waiter = asyncio.ensure_future(
                            handler.get_next_pending_unsubscription()
                        )
                    if wait_deliver in done:
                        if not await self._handle_message_delivery(
                            client_session, handler, wait_deliver
                        ):
                            return
                        wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
                    waiters = [
                        disconnect_waiter,
                        subscribe_waiter,
                        unsubscribe_waiter,
                        wait_deliver,
                    ]
            except asyncio.CancelledError:
                log.debug("client loop of %r cancelled", client_session.client_id)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

        async def _deliver_queued(
            self, client_session: Any, handler: Any, wait_deliver: asyncio.Future[Any]
        ) -> None:
            """The message the pending delivery already took (it is the oldest), then the rest
            of the client's queue, through amqtt's own delivery (ACL checks included)."""
            if not wait_deliver.done():
                wait_deliver.cancel()  # amqtt's getter returns None when cancelled ...
            taken = await asyncio.gather(wait_deliver, return_exceptions=True)
            queue = client_session.delivered_message_queue
            messages = [m for m in taken if m is not None and not isinstance(m, BaseException)]
            while not queue.empty():
                messages.append(queue.get_nowait())  # ... or the message it had taken
            loop = asyncio.get_running_loop()
            for message in messages:
                done: asyncio.Future[Any] = loop.create_future()
                done.set_result(message)
                if not await self._handle_message_delivery(client_session, handler, done):
                    return

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            """Retained messages only for a filter this client itself holds.

            amqtt 0.12.1 (measured) calls this at every CONNECT for *every* client's filters:
            a station that merely connected received every station's retained birth, because
            the CSMS subscribes to all of them (and retained deliveries skip the RECEIVE check).
            """
            topic_filter, _ = subscription
            holders = self._subscriptions.get(topic_filter, [])
            if not any(holder is session for holder, _ in holders):
                return
            await super()._publish_retained_messages_for_subscription(subscription, session)

    return AuthenticateFirstBroker
