"""Every MQTT topic of protocol v2, and every subscription filter.

Nothing outside this package builds a topic string: the CSMS, the simulator, the broker ACL
and the tests call the functions here (``docs/protocol.md``, section 3). The builders check
their ids (:class:`~protocol.errors.ProtocolError` otherwise); the filters do not, as they take
``+`` (any station) or, in the broker ACL, ``%u`` (the station's user name).
"""

from __future__ import annotations

from typing import Final

from protocol.errors import ProtocolError, UnsupportedVersion
from protocol.ids import StationId, check_id, check_station, valid_id, valid_station_id

__all__ = [
    "ALL_TOPICS_FILTER",
    "ANY_VERSION_ROOT",
    "CSMS_SUBSCRIPTIONS",
    "LEGACY_TOPIC_ROOT",
    "NODE_REQUESTS_TOPIC",
    "NODE_ROOT",
    "PROTOCOL_VERSION",
    "QOS",
    "TOPIC_NAMESPACE",
    "TOPIC_ROOT",
    "all_station_topics_filter",
    "commands_topic",
    "evse_topic_filter",
    "meter_topic",
    "replies_topic",
    "split_topic",
    "state_topic",
    "station_commands_filter",
    "station_publish_filters",
    "station_topic_filter",
    "status_topic",
]

PROTOCOL_VERSION: Final = 2
TOPIC_NAMESPACE: Final = "smartcharge"
"""The first level of every smartcharge topic, whatever the protocol version."""
TOPIC_ROOT: Final = "smartcharge/v2"
LEGACY_TOPIC_ROOT: Final = "smartcharge/v1"
"""Where version 1 stations publish: the CSMS listens there only to refuse them clearly."""
ANY_VERSION_ROOT: Final = "smartcharge/+"
"""The root of every protocol version, as a filter level: the broker ACL lets a station of
another version publish, so the CSMS hears it and can refuse it clearly."""
ALL_TOPICS_FILTER: Final = "smartcharge/#"
"""Every smartcharge topic of every version: what the CSMS's broker account may use."""
QOS: Final = 1
NODE_ROOT: Final = f"{TOPIC_NAMESPACE}/node/1"
"""The node-gateway contract's topics (``docs/node-protocol.md``, ``actors/node_contract.py``):
no station's ACL reaches them."""
NODE_REQUESTS_TOPIC: Final = f"{NODE_ROOT}/requests"


def state_topic(station_id: str) -> str:
    """Retained station birth / last will (online or offline)."""
    return f"{TOPIC_ROOT}/stations/{check_station(station_id)}/state"


def status_topic(station_id: str, evse_id: str) -> str:
    """Retained EVSE status report."""
    sid = check_station(station_id)
    return f"{TOPIC_ROOT}/stations/{sid}/evses/{check_id(evse_id, 'evse id')}/status"


def meter_topic(station_id: str, evse_id: str) -> str:
    sid = check_station(station_id)
    return f"{TOPIC_ROOT}/stations/{sid}/evses/{check_id(evse_id, 'evse id')}/meter"


def commands_topic(station_id: str) -> str:
    """CSMS -> station command requests."""
    return f"{TOPIC_ROOT}/stations/{check_station(station_id)}/commands"


def replies_topic(station_id: str) -> str:
    """Station -> CSMS command replies."""
    return f"{TOPIC_ROOT}/stations/{check_station(station_id)}/replies"


CSMS_SUBSCRIPTIONS: Final = (
    f"{TOPIC_ROOT}/stations/+/state",
    f"{TOPIC_ROOT}/stations/+/replies",
    f"{TOPIC_ROOT}/stations/+/evses/+/status",
    f"{TOPIC_ROOT}/stations/+/evses/+/meter",
    f"{LEGACY_TOPIC_ROOT}/stations/+/state",  # only to refuse version 1 stations by name
)
"""What the CSMS subscribes to (QoS 1)."""


def station_topic_filter(station_id: str = "+") -> str:
    """Everything a station publishes except EVSE reports: ``state`` and ``replies``."""
    return f"{TOPIC_ROOT}/stations/{station_id}/+"


def evse_topic_filter(station_id: str = "+") -> str:
    """EVSE status and meter reports of one station (or all, with ``+``)."""
    return f"{TOPIC_ROOT}/stations/{station_id}/evses/+/+"


def all_station_topics_filter(station_id: str = "+") -> str:
    """Every topic of one station (or all, with ``+``), both ways: reports, commands, replies."""
    return f"{TOPIC_ROOT}/stations/{station_id}/#"


def station_publish_filters(station_id: str = "+", *, root: str = TOPIC_ROOT) -> tuple[str, ...]:
    """What a station may publish on: its ``state``, its EVSEs' ``status`` and ``meter``, its
    ``replies`` (the broker ACL passes ``%u`` and :data:`ANY_VERSION_ROOT`)."""
    station = f"{root}/stations/{station_id}"
    return (
        f"{station}/state",
        f"{station}/evses/+/status",
        f"{station}/evses/+/meter",
        f"{station}/replies",
    )


def station_commands_filter(station_id: str = "+", *, root: str = TOPIC_ROOT) -> str:
    """What a station may receive: its ``commands`` (as :func:`station_publish_filters`)."""
    return f"{root}/stations/{station_id}/commands"


_PREFIX: Final = TOPIC_ROOT + "/stations/"
_LEGACY_PREFIX: Final = LEGACY_TOPIC_ROOT + "/stations/"


def split_topic(topic: str) -> list[str]:
    """The levels of a v2 topic after ``stations/``, the station id and any EVSE id checked.

    Raises :class:`UnsupportedVersion` for a valid version 1 station's topic and
    :class:`ProtocolError` for anything else that is not a v2 station topic."""
    if not topic.startswith(_PREFIX):
        if topic.startswith(_LEGACY_PREFIX):
            sid = topic[len(_LEGACY_PREFIX) :].split("/")[0]
            if valid_id(sid):
                raise UnsupportedVersion(
                    f"station {sid!r} speaks protocol version 1; this CSMS speaks version "
                    f"{PROTOCOL_VERSION} (docs/protocol.md, changes since version 1)",
                    station_id=StationId(sid),
                    version=1,
                )
        raise ProtocolError(f"not a protocol v{PROTOCOL_VERSION} topic: {topic[:200]!r}")
    parts = topic[len(_PREFIX) :].split("/")
    if not valid_station_id(parts[0]) or (len(parts) > 2 and not valid_id(parts[2])):
        raise ProtocolError(f"invalid id in topic {topic[:200]!r}")
    return parts
