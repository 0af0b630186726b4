"""MqttSettings: URLs with a user but never a password, passwords from a file or the
environment, TLS options, a repr that never shows the password."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from protocol.mqtt_settings import PASSWORD_ENV, MqttSettings, parse_mqtt_url


class FakePaho:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def username_pw_set(self, username: str, password: str | None) -> None:
        self.calls.append(("username_pw_set", (username, password)))

    def tls_set_context(self, context: ssl.SSLContext) -> None:
        self.calls.append(("tls_set_context", context))


@pytest.mark.parametrize(
    ("url", "host", "port", "user", "tls"),
    [
        ("mqtt://broker:1884", "broker", 1884, None, False),
        ("mqtt://10.0.0.5", "10.0.0.5", 1883, None, False),
        ("mqtts://broker", "broker", 8883, None, True),
        ("mqtts://csms@broker:9883", "broker", 9883, "csms", True),
        ("mqtt://st-001@127.0.0.1:1883", "127.0.0.1", 1883, "st-001", False),
    ],
)
def test_urls_name_host_port_user_and_tls(
    url: str, host: str, port: int, user: str | None, tls: bool
) -> None:
    s = parse_mqtt_url(url, env={})
    assert (s.host, s.port, s.username, s.tls, s.password) == (host, port, user, tls, None)


def test_a_password_inside_the_url_is_refused() -> None:
    with pytest.raises(ValueError, match="must not carry a password"):
        parse_mqtt_url("mqtt://csms:secret@broker:1883")


@pytest.mark.parametrize("url", ["http://x:1", "mqtt://", "mqtt://h:port"])
def test_a_bad_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="MQTT URL"):
        parse_mqtt_url(url, env={})


def test_the_password_comes_from_a_file_first_then_the_environment(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    env = {PASSWORD_ENV: "from-env"}
    assert parse_mqtt_url("mqtt://u@h", password_file=pw_file, env=env).password == "from-file"
    assert parse_mqtt_url("mqtt://u@h", env=env).password == "from-env"
    assert parse_mqtt_url("mqtt://h", env=env).password is None  # no user, no password


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("")
    with pytest.raises(ValueError, match="empty"):
        parse_mqtt_url("mqtt://u@h", password_file=tmp_path / "pw")


def test_a_ca_file_needs_mqtts() -> None:
    with pytest.raises(ValueError, match="mqtts"):
        parse_mqtt_url("mqtt://u@h", ca_file="/ca.pem")


def test_repr_and_url_never_show_the_password() -> None:
    s = parse_mqtt_url("mqtts://csms@h", password="hunter2-secret", env={})
    assert "hunter2-secret" not in repr(s)
    assert "hunter2-secret" not in str(s)
    assert "hunter2-secret" not in s.url
    assert s.url == "mqtts://csms@h:8883"


def test_apply_to_sets_credentials_and_a_verifying_tls_context() -> None:
    client = FakePaho()
    parse_mqtt_url("mqtts://st-1@h", password="pw", env={}).apply_to(client)
    (name, creds), (tls_name, context) = client.calls
    assert (name, creds) == ("username_pw_set", ("st-1", "pw"))
    assert tls_name == "tls_set_context"
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_plain_anonymous_settings_touch_nothing() -> None:
    client = FakePaho()
    MqttSettings(host="h", port=1).apply_to(client)
    assert client.calls == []


def test_settings_survive_the_pipe_to_the_mqtt_child() -> None:
    s = parse_mqtt_url("mqtts://u@h:1", password="pw", env={}).with_client_id("c")
    assert MqttSettings.from_json(s.to_json()) == s
