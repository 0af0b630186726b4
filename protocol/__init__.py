"""Wire protocol v2: every MQTT topic and payload between stations and the CSMS.

This package is the only code that knows topic strings and JSON field names; the
simulator, the MQTT bridge and the tests all build and parse messages here, and it imports
nothing else of smartcharge (``setup.cfg``'s import-linter contracts).
``docs/protocol.md`` is the prose version for station vendors; keep both in step.

- :mod:`protocol.ids`: station, EVSE, session and correlation ids; :func:`evse_key`.
- :mod:`protocol.topics`: every topic and subscription filter.
- :mod:`protocol.messages`: the messages as dataclasses, and their enums.
- :mod:`protocol.commands`: the typed arguments of each command.
- :mod:`protocol.codec`: :func:`encode` and :func:`parse`, and the limits they keep.
- :mod:`protocol.errors`: :class:`ProtocolError` and :class:`UnsupportedVersion`.
- :mod:`protocol.mqtt_settings`: how a client reaches the broker (URL, TLS, password file,
  reconnect back-off), shared by the CSMS and the stations; not re-exported here.

Design points (``docs/facts.md``, amqtt, says why):

- MQTT 3.1.1 is enough (amqtt rejects MQTT 5), so correlation ids travel in the
  payload, not in MQTT 5 properties.
- Every receiver checks that a topic is its own (amqtt leaks retained messages
  to unrelated subscribers), and that ids in the payload match ids in the topic.
- :func:`parse` only ever raises :class:`ProtocolError`, whatever the bytes.
- Version 2 (``docs/protocol.md``, "changes since version 1"): the CSMS names an EVSE by
  its station and its own id (:func:`evse_key`), station messages are ordered by
  ``(epoch, seq)`` where a birth announces the epoch, and every command carries
  ``expires_at``. A version 1 message raises :class:`UnsupportedVersion`, so the CSMS can
  refuse the station clearly instead of misreading it.
"""

from __future__ import annotations

from protocol.codec import (
    MAX_FUTURE_SKEW_MS,
    MAX_PAYLOAD_BYTES,
    encode,
    parse,
)
from protocol.commands import (
    MAX_LIMIT_W,
    CancelReservationArgs,
    Command,
    CommandArgs,
    InfoArgs,
    MaintenanceArgs,
    ReserveArgs,
    SetLimitArgs,
    StartArgs,
    StopArgs,
    args_dict,
    command_args,
    command_for,
)
from protocol.errors import (
    ProtocolError,
    UnsupportedVersion,
)
from protocol.ids import (
    CorrelationId,
    EvseId,
    EvseKey,
    SessionId,
    StationId,
    evse_key,
    split_evse_key,
    valid_evse_key,
    valid_id,
    valid_station_id,
)
from protocol.messages import (
    DEFAULT_MIN_POWER_W,
    EVSE_VALUE_FIELDS,
    CommandName,
    CommandReply,
    CommandRequest,
    EvseDescriptor,
    EvseInfo,
    EvseStatus,
    EvseValues,
    Message,
    MeterValues,
    RejectReason,
    StationBirth,
    StationDescriptor,
    StationOffline,
    StatusReport,
    StopReason,
    evse_values,
)
from protocol.topics import (
    ALL_TOPICS_FILTER,
    ANY_VERSION_ROOT,
    CSMS_SUBSCRIPTIONS,
    LEGACY_TOPIC_ROOT,
    NODE_REQUESTS_TOPIC,
    NODE_ROOT,
    PROTOCOL_VERSION,
    QOS,
    TOPIC_NAMESPACE,
    TOPIC_ROOT,
    all_station_topics_filter,
    commands_topic,
    evse_topic_filter,
    meter_topic,
    replies_topic,
    state_topic,
    station_commands_filter,
    station_publish_filters,
    station_topic_filter,
    status_topic,
)

__all__ = [
    "ALL_TOPICS_FILTER",
    "ANY_VERSION_ROOT",
    "CSMS_SUBSCRIPTIONS",
    "DEFAULT_MIN_POWER_W",
    "EVSE_VALUE_FIELDS",
    "LEGACY_TOPIC_ROOT",
    "MAX_FUTURE_SKEW_MS",
    "MAX_LIMIT_W",
    "MAX_PAYLOAD_BYTES",
    "NODE_REQUESTS_TOPIC",
    "NODE_ROOT",
    "PROTOCOL_VERSION",
    "QOS",
    "TOPIC_NAMESPACE",
    "TOPIC_ROOT",
    "CancelReservationArgs",
    "Command",
    "CommandArgs",
    "CommandName",
    "CommandReply",
    "CommandRequest",
    "CorrelationId",
    "EvseDescriptor",
    "EvseId",
    "EvseInfo",
    "EvseKey",
    "EvseStatus",
    "EvseValues",
    "InfoArgs",
    "MaintenanceArgs",
    "Message",
    "MeterValues",
    "ProtocolError",
    "RejectReason",
    "ReserveArgs",
    "SessionId",
    "SetLimitArgs",
    "StartArgs",
    "StationBirth",
    "StationDescriptor",
    "StationId",
    "StationOffline",
    "StatusReport",
    "StopArgs",
    "StopReason",
    "UnsupportedVersion",
    "all_station_topics_filter",
    "args_dict",
    "command_args",
    "command_for",
    "commands_topic",
    "encode",
    "evse_key",
    "evse_topic_filter",
    "evse_values",
    "meter_topic",
    "parse",
    "replies_topic",
    "split_evse_key",
    "state_topic",
    "station_commands_filter",
    "station_publish_filters",
    "station_topic_filter",
    "status_topic",
    "valid_evse_key",
    "valid_id",
    "valid_station_id",
]
