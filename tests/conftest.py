"""Shared fixtures: real MQTT brokers on free ports, a blocking MQTT test client, and the
``SMARTCHARGE_REQUIRE_ALL=1`` policy (CI): every skipped test is reported as a failure.

Fixtures
--------
``mosquitto_broker`` / ``amqtt_broker``
    a started :class:`gateway.broker.EmbeddedBroker` on a free loopback port with its own data dir
    in ``tmp_path`` (function scope: no retained messages or sessions leak between tests).
``mosquitto_url`` / ``amqtt_url``
    the ``mqtt://127.0.0.1:PORT`` url of the above.
``any_broker`` / ``broker_url``
    parametrized over both (test ids ``[mosquitto]`` and ``[amqtt]``).
``secure_broker``
    parametrized over both brokers, enforcing identity and the ACL (``auth_dir``), with a TLS
    listener: a :class:`SecureBroker` whose ``station(id)`` provisions a station and returns its
    password and whose ``csms_password`` is the CSMS's.
``mqtt_client``
    a factory ``mqtt_client(url, client_id=None, *, clean_session=True, keepalive=30, will=None,
    connect=True) -> MqttTestClient``; every client is closed at teardown.

Without the mosquitto binary the Mosquitto fixtures skip ("mosquitto binary not found:
apt-get install mosquitto"), which ``SMARTCHARGE_REQUIRE_ALL=1`` turns into a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # the project need not be pip-installed to run its tests
    sys.path.insert(0, str(REPO_ROOT))

from gateway.broker import BrokerNotFoundError, EmbeddedBroker  # noqa: E402
from gateway.broker_accounts import CSMS_USER, read_password_file  # noqa: E402
from gateway.stations import StationProvisioner  # noqa: E402
from storage import open_storage  # noqa: E402
from tests.brokers import MqttClientFactory, MqttTestClient  # noqa: E402

REQUIRE_ALL_ENV = "SMARTCHARGE_REQUIRE_ALL"


def require_all() -> bool:
    return os.environ.get(REQUIRE_ALL_ENV, "").strip().lower() in ("1", "true", "yes")


# -- SMARTCHARGE_REQUIRE_ALL: no silent skips in CI -----------------------------------------


def pytest_report_header(config: pytest.Config) -> str | None:
    if require_all():
        return f"{REQUIRE_ALL_ENV}=1: skipped tests are reported as failures"
    return None


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, reason = longrepr
        return f"{reason} ({path}:{lineno})"
    return str(longrepr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # xfail is an explicit expectation, not a missing dependency: leave it alone.
    if require_all() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"{REQUIRE_ALL_ENV}=1 forbids skipping; skipped because: "
            f"{_skip_reason(report.longrepr)}"
        )
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    # A module-level skip (pytest.importorskip, skip(allow_module_level=True)) skips a whole file.
    if require_all() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"{REQUIRE_ALL_ENV}=1 forbids skipping; {collector.nodeid} skipped because: "
            f"{_skip_reason(report.longrepr)}"
        )
    return report


# -- needs_db: what CI runs again on PostgreSQL ------------------------------------------------

DB_FIXTURES = frozenset({"running", "db_url"})
"""Fixtures that open storage on the test's database (tests/db.py, tests/api_fixtures.py)."""


SCREENSHOT_ENVS = ("SMARTCHARGE_FLEET_SCREENSHOT", "SMARTCHARGE_APP_SCREENSHOTS")
"""What asks for the ``screenshots`` tests (they refresh docs/screenshots/)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using a storage fixture is ``needs_db`` without saying so (modules whose
    fixtures open storage themselves carry the mark in their ``pytestmark``). Tests marked
    ``screenshots`` only refresh docs/screenshots/: they are deselected (not skipped, so
    ``SMARTCHARGE_REQUIRE_ALL`` has nothing to say) unless one of ``SCREENSHOT_ENVS`` asks."""
    wanted = any(os.environ.get(name) for name in SCREENSHOT_ENVS)
    kept, dropped = [], []
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_db)
        if item.get_closest_marker("screenshots") is not None and not wanted:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# -- brokers ---------------------------------------------------------------------------------


def _start_broker(kind: str, data_dir: Path) -> EmbeddedBroker:
    try:
        broker = EmbeddedBroker(port=0, data_dir=data_dir, prefer=kind)  # type: ignore[arg-type]
    except BrokerNotFoundError as exc:
        pytest.skip(str(exc))
    return broker.start()


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = _start_broker("mosquitto", tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = _start_broker("amqtt", tmp_path / "amqtt")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_url(mosquitto_broker: EmbeddedBroker) -> str:
    return mosquitto_broker.url


@pytest.fixture(scope="module")
def module_mosquitto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Mosquitto for a whole module (for module-scoped CSMS stacks)."""
    broker = _start_broker("mosquitto", tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def amqtt_url(amqtt_broker: EmbeddedBroker) -> str:
    return amqtt_broker.url


@pytest.fixture(params=["mosquitto", "amqtt"], ids=["mosquitto", "amqtt"])
def any_broker(request: pytest.FixtureRequest) -> EmbeddedBroker:
    """Each broker in turn (test ids ``[mosquitto]``, ``[amqtt]``)."""
    broker: EmbeddedBroker = request.getfixturevalue(f"{request.param}_broker")
    return broker


@pytest.fixture
def broker_url(any_broker: EmbeddedBroker) -> str:
    """The url of each broker in turn (test ids ``[mosquitto]``, ``[amqtt]``)."""
    return any_broker.url


class SecureBroker:
    """A broker that enforces identity and the ACL, with its provisioner (tests/conftest.py)."""

    def __init__(self, broker: EmbeddedBroker, provisioner: StationProvisioner) -> None:
        self.broker = broker
        self.provisioner = provisioner

    @property
    def kind(self) -> str:
        return self.broker.kind

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def csms_user(self) -> str:
        return CSMS_USER

    @property
    def csms_password(self) -> str:
        return read_password_file(self.provisioner.csms_password_file())

    def station(self, station_id: str) -> str:
        """Provision ``station_id`` (the broker reloads); its password."""
        return self.provisioner.add(station_id).password


def start_secure_broker(kind: str, root: Path, *, tls: bool = True) -> SecureBroker:
    """A broker of ``kind`` whose files live in ``root/csms/mqtt``, its database in
    ``root/csms``; the caller stops ``.broker`` and closes ``.provisioner.storage``."""
    csms_dir = root / "csms"
    storage = open_storage(None, data_dir=csms_dir)
    provisioner = StationProvisioner(storage, csms_dir)
    provisioner.sync()
    try:
        broker = EmbeddedBroker(
            port=0,
            data_dir=root / kind,
            prefer=kind,  # type: ignore[arg-type]
            auth_dir=provisioner.auth_dir,
            tls_port=0 if tls else None,
        )
    except BrokerNotFoundError as exc:
        storage.close()
        pytest.skip(str(exc))
    try:
        broker.start()
    except BaseException:
        storage.close()
        raise
    return SecureBroker(broker, provisioner)


@pytest.fixture(params=["mosquitto", "amqtt"], ids=["mosquitto", "amqtt"])
def secure_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecureBroker]:
    """Each broker in turn, enforcing identity and the ACL, with a TLS listener."""
    secure = start_secure_broker(request.param, tmp_path)
    try:
        yield secure
    finally:
        secure.broker.stop()
        secure.provisioner.storage.close()


# -- MQTT test clients -----------------------------------------------------------------------


@pytest.fixture
def mqtt_client() -> Iterator[MqttClientFactory]:
    """``mqtt_client(url, client_id=None, *, connect=True, **kw)``: connected MqttTestClients."""
    clients: list[MqttTestClient] = []

    def make(
        url: str, client_id: str | None = None, *, connect: bool = True, **kwargs: object
    ) -> MqttTestClient:
        client = MqttTestClient(url, client_id, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        if connect:
            client.connect()
        return client

    yield make
    for client in reversed(clients):
        client.close()
