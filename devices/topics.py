"""The MQTT topic grammar (CONTRACT section 1): parse and format, nothing else.

    <root>/<community>/<kind>/<device>/telemetry | event | status   device -> collector
    <root>/<community>/alert/<kind>/<device>                        collector -> operators
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from devices.payloads import KINDS

IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
CHANNELS = ("telemetry", "event", "status")
Channel = Literal["telemetry", "event", "status"]
DEFAULT_ROOT = "sc"


class TopicError(ValueError):
    """Raised when a topic does not follow the grammar; the message says which part."""


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    community: str
    kind: str
    device: str
    channel: Channel


def is_identifier(text: str) -> bool:
    """True when ``text`` is a valid community or device identifier."""
    return IDENTIFIER.fullmatch(text) is not None


def parse(topic: str, root: str = DEFAULT_ROOT) -> DeviceTopic:
    """Parse a device topic.

    Raises:
        TopicError: the topic has the wrong root, shape, kind, channel or identifiers.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != root:
        raise TopicError(f"topic {topic!r} is not {root}/<community>/<kind>/<device>/<channel>")
    _, community, kind, device, channel = parts
    if not is_identifier(community):
        raise TopicError(f"community {community!r} is not a valid identifier")
    if kind not in KINDS:
        raise TopicError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if not is_identifier(device):
        raise TopicError(f"device {device!r} is not a valid identifier")
    if channel not in CHANNELS:
        raise TopicError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    return DeviceTopic(community, kind, device, channel)  # type: ignore[arg-type]


def device_topic(community: str, kind: str, device: str, channel: Channel,
                 root: str = DEFAULT_ROOT) -> str:
    """The topic a device publishes ``channel`` messages on."""
    return f"{root}/{community}/{kind}/{device}/{channel}"


def alert_topic(community: str, kind: str, device: str, root: str = DEFAULT_ROOT) -> str:
    """The topic an alert about ``device`` is published on."""
    return f"{root}/{community}/alert/{kind}/{device}"


def subscriptions(root: str = DEFAULT_ROOT) -> list[str]:
    """The filters the collector subscribes to: every device channel, no alerts."""
    return [f"{root}/+/+/+/{channel}" for channel in CHANNELS]
