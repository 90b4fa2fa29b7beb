"""The MQTT 3.1.1 codec, as a library would be tested: no sockets, bytes in, callbacks out."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector import mqttwire as wire
from collector.errors import BrokerError


class Seen:
    def __init__(self) -> None:
        self.packets: list[tuple] = []

    def publish(self, topic: str, payload: bytes, packet_id: int, dup: bool) -> None:
        self.packets.append(("publish", topic, payload, packet_id, dup))

    def control(self, kind: int, body: bytes) -> None:
        self.packets.append(("control", kind, body))


def parser(seen: Seen, **kw: int) -> wire.Parser:
    return wire.Parser(seen.publish, seen.control, **kw)


def qos0(topic: str, payload: bytes) -> bytes:
    return wire._packet(wire.PUBLISH << 4, wire._string(topic) + payload)


#: One of every packet a broker sends a subscriber, and publishes of each length size.
STREAM = [
    b"\x20\x02\x00\x00",                                   # CONNACK accepted
    b"\x90\x03\x00\x01\x01",                               # SUBACK, QoS 1 granted
    wire.publish("sc/c/door/d/telemetry", b'{"open": true}', 7),
    wire.publish("sc/c/door/d/telemetry", b"again", 7, dup=True),
    qos0("sc/c/door/d/status", b"online"),
    b"\x40\x02\x00\x09",                                   # PUBACK of one of ours
    b"\xd0\x00",                                           # PINGRESP
    wire.publish("sc/c/x/y/telemetry", b"x" * 200, 300),   # 2-byte remaining length
    wire.publish("sc/c/x/y/telemetry", b"y" * 20_000, 301),  # 3-byte remaining length
]
EXPECTED = [
    ("control", wire.CONNACK, b"\x00\x00"), ("control", wire.SUBACK, b"\x00\x01\x01"),
    ("publish", "sc/c/door/d/telemetry", b'{"open": true}', 7, False),
    ("publish", "sc/c/door/d/telemetry", b"again", 7, True),
    ("publish", "sc/c/door/d/status", b"online", 0, False),
    ("control", wire.PUBACK, b"\x00\x09"), ("control", wire.PINGRESP, b""),
    ("publish", "sc/c/x/y/telemetry", b"x" * 200, 300, False),
    ("publish", "sc/c/x/y/telemetry", b"y" * 20_000, 301, False),
]


def test_many_packets_in_one_chunk() -> None:
    seen = Seen()
    parser(seen).feed(b"".join(STREAM))
    assert seen.packets == EXPECTED


@pytest.mark.parametrize("index", range(len(STREAM)))
def test_every_packet_split_at_every_byte_offset(index: int) -> None:
    packet = STREAM[index]
    offsets = range(1, len(packet)) if len(packet) < 400 else \
        [*range(1, 12), len(packet) // 2, len(packet) - 1]
    for at in offsets:
        seen = Seen()
        p = parser(seen)
        p.feed(packet[:at])
        assert seen.packets == [], f"nothing before the packet is whole (split at {at})"
        p.feed(packet[at:])
        assert seen.packets == [EXPECTED[index]], f"split at {at}"


@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=60))
def test_any_chunking_of_the_stream_gives_the_same_packets(sizes: list[int]) -> None:
    data = b"".join(STREAM[:7])
    seen = Seen()
    p = parser(seen)
    at = 0
    for size in sizes * (len(data) // sum(sizes) + 1):
        p.feed(data[at:at + size])
        at += size
        if at >= len(data):
            break
    assert seen.packets == EXPECTED[:7]


@pytest.mark.parametrize("length", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_length_at_each_encoding_size(length: int) -> None:
    encoded = wire._length(length)
    assert len(encoded) == 1 + (length >= 128) + (length >= 16_384) + (length >= 2_097_152)
    seen = Seen()
    body = b"\x00\x01t" + b"z" * (length - 3) if length >= 3 else None
    if body is None:
        return
    parser(seen, max_packet=2**22).feed(bytes((wire.PUBLISH << 4,)) + encoded + body)
    assert seen.packets == [("publish", "t", b"z" * (length - 3), 0, False)]


@pytest.mark.parametrize(("data", "says"), [
    (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
    (b"\x30\x80\x80\x80\x08", "over the limit"),
    (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
    (b"\x30\x04\x00\x09ab", "topic runs past"),
    (b"\x32\x03\x00\x01t", "without its packet id"),
    (b"\x30\x05\x00\x02\xff\xfex", "not UTF-8"),
    (b"\x10\x00", "packet type 1"),
    (b"\x00\x00", "packet type 0"),
    (b"\xf0\x00", "packet type 15"),
    (b"\x80\x02\x00\x01", "packet type 8"),
])
def test_what_is_not_mqtt_is_a_broker_error(data: bytes, says: str) -> None:
    with pytest.raises(BrokerError, match=says):
        parser(Seen(), max_packet=2**20).feed(data)


def test_the_packet_limit_holds_for_two_byte_lengths_too() -> None:
    """Lengths of 128 B to 16 KB are read inline; the limit is still checked there."""
    with pytest.raises(BrokerError, match="300 bytes is over the limit"):
        parser(Seen(), max_packet=200).feed(b"\x30" + wire._length(300) + b"\x00\x01t")


def test_pubacks_of_several_messages_in_one_write() -> None:
    assert wire.pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


def test_outgoing_publish_and_its_dup() -> None:
    first = wire.publish("a/b", b"x", 5)
    again = wire.publish("a/b", b"x", 5, dup=True)
    assert first[0] == 0x32 and again[0] == 0x3A and first[1:] == again[1:]
    assert struct.unpack(">H", first[7:9]) == (5,)


def test_connect_carries_credentials_and_a_persistent_session() -> None:
    packet = wire.connect("sct", 30, False, "user", "secret")
    assert packet[0] == 0x10 and b"MQTT\x04" in packet
    flags = packet[packet.index(b"MQTT\x04") + 5]
    assert flags == 0xC0, "user name and password, clean session off"
    assert packet.endswith(b"\x00\x04user\x00\x06secret")
