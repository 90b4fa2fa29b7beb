from __future__ import annotations

import pytest

from devices import topics
from devices.topics import DeviceTopic, TopicError


def test_parse_and_format_round_trip() -> None:
    t = topics.device_topic("sjz-yuhua-001", "streetlight", "sjz-yuhua-001-sl-0001", "telemetry")
    assert t == "sc/sjz-yuhua-001/streetlight/sjz-yuhua-001-sl-0001/telemetry"
    assert topics.parse(t) == DeviceTopic("sjz-yuhua-001", "streetlight",
                                          "sjz-yuhua-001-sl-0001", "telemetry")


def test_custom_root() -> None:
    assert topics.parse("hb/c1/door/d1/event", root="hb").channel == "event"
    with pytest.raises(TopicError, match="not hb/"):
        topics.parse("sc/c1/door/d1/event", root="hb")


@pytest.mark.parametrize(("topic", "complaint"), [
    ("sc/c1/door/d1", "is not sc/"),
    ("sc/c1/door/d1/event/x", "is not sc/"),
    ("sc/C1/door/d1/event", "community 'C1'"),
    ("sc/-c1/door/d1/event", "community '-c1'"),
    ("sc/c1/lamp/d1/event", "kind 'lamp'"),
    ("sc/c1/alert/door/d1", "kind 'alert'"),
    ("sc/c1/door/d_1/event", "device 'd_1'"),
    ("sc/c1/door/" + "d" * 65 + "/event", "device"),
    ("sc/c1/door/d1/telemetri", "channel 'telemetri'"),
])
def test_bad_topics_say_what_is_wrong(topic: str, complaint: str) -> None:
    with pytest.raises(TopicError, match=complaint):
        topics.parse(topic)


def test_identifiers() -> None:
    assert topics.is_identifier("a")
    assert topics.is_identifier("0" + "a" * 63)
    assert not topics.is_identifier("a" * 65)
    assert not topics.is_identifier("")
    assert not topics.is_identifier("a b")


def test_alert_topic_and_subscriptions() -> None:
    assert topics.alert_topic("c1", "door", "d1") == "sc/c1/alert/door/d1"
    assert topics.subscriptions("sc") == ["sc/+/+/+/telemetry", "sc/+/+/+/event",
                                          "sc/+/+/+/status"]
