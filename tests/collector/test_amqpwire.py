"""The AMQP 0-9-1 consumer codec: deliveries parsed from frames however the stream is cut,
and the frames a consumer sends as RabbitMQ reads them (the cluster tests run it against
real nodes)."""

from __future__ import annotations

import struct

import pytest

from collector.cluster import amqpwire as wire
from collector.errors import BrokerError


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def deliver(channel: int, tag: int, key: str, body: bytes, redelivered: bool = False,
            max_body: int = 1 << 20) -> bytes:
    method = struct.pack(">HH", 60, 60) + b"\x03abc" + struct.pack(">QB", tag, redelivered) \
        + b"\x09amq.topic" + bytes((len(key),)) + key.encode()
    header = struct.pack(">HHQH", 60, 0, len(body), 0)
    bodies = b"".join(frame(wire.FRAME_BODY, channel, body[at:at + max_body])
                      for at in range(0, len(body), max_body))
    return frame(wire.FRAME_METHOD, channel, method) + frame(wire.FRAME_HEADER, channel,
                                                             header) + bodies


def parse(stream: bytes, cuts: list[int]) -> tuple[list[tuple[int, int, bool, str, bytes]],
                                                   list[tuple[int, tuple[int, int], bytes]]]:
    got: list[tuple[int, int, bool, str, bytes]] = []
    methods: list[tuple[int, tuple[int, int], bytes]] = []
    parser = wire.Parser(lambda *d: got.append(d), lambda *m: methods.append(m))
    at = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[at:cut])
        at = cut
    return got, methods


STREAM = (deliver(1, 7, "sc.c1.streetlight.l1.telemetry", b'{"on": true}')
          + frame(wire.FRAME_HEARTBEAT, 0, b"")
          + deliver(2, 1, "sc.c2.door.d.event", b"x" * 300, redelivered=True, max_body=128)
          + frame(wire.FRAME_METHOD, 3, struct.pack(">HH", 60, 21) + b"\x03tag")
          + deliver(1, 8, "k", b""))
EXPECTED = [(1, 7, False, "sc.c1.streetlight.l1.telemetry", b'{"on": true}'),
            (2, 1, True, "sc.c2.door.d.event", b"x" * 300), (1, 8, False, "k", b"")]


@pytest.mark.parametrize("cuts", [[], [1], [7], [8], [30], [100, 101, 102],
                                  list(range(1, len(STREAM)))])
def test_deliveries_and_methods_come_out_whole_however_the_stream_is_cut(
        cuts: list[int]) -> None:
    got, methods = parse(STREAM, cuts)
    assert got == EXPECTED
    assert methods == [(3, wire.BASIC_CONSUME_OK, b"\x03tag")]


def test_a_delivery_interleaved_with_another_channels_frames_is_kept_per_channel() -> None:
    one, two = deliver(1, 1, "a", b"first" * 100, max_body=64), deliver(2, 5, "b", b"second")
    # one's deliver and header, then all of two, then one's bodies
    split = one.index(b"first") - 7
    got, _ = parse(one[:split] + two + one[split:], [])
    assert got == [(2, 5, False, "b", b"second"), (1, 1, False, "a", b"first" * 100)]


@pytest.mark.parametrize("stream", [
    frame(wire.FRAME_METHOD, 1, b"\x00\x3c\x00\x50")[:-1] + b"\x00",      # no frame end
    frame(wire.FRAME_BODY, 1, b"orphan"),                                 # no delivery
    frame(wire.FRAME_HEADER, 1, struct.pack(">HHQH", 60, 0, 3, 0)),       # no delivery
    frame(9, 0, b""),                                                     # unknown type
    frame(wire.FRAME_METHOD, 1, b"\x00"),                                 # no method id
])
def test_what_a_broker_never_sends_is_an_error(stream: bytes) -> None:
    with pytest.raises(BrokerError):
        parse(stream, [])


def test_the_frames_a_consumer_sends() -> None:
    assert wire.ack(3, 2**40, True) == frame(wire.FRAME_METHOD, 3, struct.pack(
        ">HHQB", 60, 80, 2**40, 1))
    assert wire.qos(2, 2000) == frame(wire.FRAME_METHOD, 2, struct.pack(">HHIHB", 60, 10, 0,
                                                                          2000, 0))
    consume = wire.consume(4, "sct.partition.3", "sct-a.3")
    assert consume == frame(wire.FRAME_METHOD, 4, struct.pack(">HHH", 60, 20, 0)
                            + b"\x0fsct.partition.3" + b"\x07sct-a.3" + b"\x00" + b"\x00" * 4)
    _, methods = parse(wire.start_ok("u", "p", "n"), [])
    kind, arguments = methods[0][1], methods[0][2]
    assert kind == wire.CONNECTION_START_OK and b"\x05PLAIN\x00\x00\x00\x04\x00u\x00p" \
        in arguments and arguments.endswith(b"\x05en_US")
    assert wire.close_reason(struct.pack(">H", 404) + b"\x09NOT_FOUND" + b"\x00" * 4) == \
        "404 NOT_FOUND"
