"""AMQP 0-9-1 on the wire, for consuming only: the frames a consumer sends, and a parser for
what the broker sends it.

Sans-io, as ``collector/mqttwire.py``: bytes in, callbacks out. Only what the partition
consumer needs: the connection handshake (PLAIN), channels, ``basic.qos``,
``basic.consume``, deliveries (``basic.deliver``, its content header and body frames),
``basic.ack``, heartbeats and closing. The point is speed: aiormq parses each frame into
objects (pamqp) and runs a task per delivery, about a third of a cluster collector's CPU
(README, Scaling out); :meth:`Parser.feed` takes every complete frame of a chunk in one loop
and hands a delivery over as plain values. Publishing, confirms and streams stay on
aio-pika (``broker.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from collector.errors import BrokerError

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

# (class, method) of what is sent and received.
CONNECTION_START, CONNECTION_START_OK = (10, 10), (10, 11)
CONNECTION_TUNE, CONNECTION_TUNE_OK = (10, 30), (10, 31)
CONNECTION_OPEN, CONNECTION_OPEN_OK = (10, 40), (10, 41)
CONNECTION_CLOSE, CONNECTION_CLOSE_OK = (10, 50), (10, 51)
CHANNEL_OPEN, CHANNEL_OPEN_OK = (20, 10), (20, 11)
CHANNEL_CLOSE, CHANNEL_CLOSE_OK = (20, 40), (20, 41)
BASIC_QOS, BASIC_QOS_OK = (60, 10), (60, 11)
BASIC_CONSUME, BASIC_CONSUME_OK = (60, 20), (60, 21)
BASIC_CANCEL = (60, 30)
BASIC_DELIVER = (60, 60)
BASIC_ACK = (60, 80)

_FRAME = struct.Struct(">BHI")
_METHOD = struct.Struct(">HH")
_ACK = struct.Struct(">HHQB")
_HEARTBEAT = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END))


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"a short string of {len(raw)} bytes (at most 255)")
    return bytes((len(raw),)) + raw


def _longstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def table(values: dict[str, str | bool | dict[str, bool]]) -> bytes:
    """A field table of texts, booleans and tables of booleans (all a consumer sends)."""
    out = bytearray()
    for key, value in values.items():
        out += _shortstr(key)
        if isinstance(value, bool):
            out += b"t" + bytes((int(value),))
        elif isinstance(value, str):
            out += b"S" + _longstr(value.encode())
        else:
            out += b"F" + table(dict(value))
    return _longstr(bytes(out))


def method(channel: int, kind: tuple[int, int], arguments: bytes = b"") -> bytes:
    """One method frame."""
    payload = _METHOD.pack(*kind) + arguments
    return _FRAME.pack(FRAME_METHOD, channel, len(payload)) + payload + bytes((FRAME_END,))


def start_ok(user: str, password: str, name: str) -> bytes:
    properties = table({"product": "sct", "connection_name": name,
                        "capabilities": {"consumer_cancel_notify": True,
                                         "basic.nack": True}})
    response = b"\x00" + user.encode() + b"\x00" + password.encode()
    return method(0, CONNECTION_START_OK, properties + _shortstr("PLAIN") + _longstr(response)
                  + _shortstr("en_US"))


def tune_ok(channel_max: int, frame_max: int, heartbeat_s: int) -> bytes:
    return method(0, CONNECTION_TUNE_OK, struct.pack(">HIH", channel_max, frame_max,
                                                     heartbeat_s))


def connection_open(vhost: str) -> bytes:
    return method(0, CONNECTION_OPEN, _shortstr(vhost) + _shortstr("") + b"\x00")


def channel_open(channel: int) -> bytes:
    return method(channel, CHANNEL_OPEN, _shortstr(""))


def qos(channel: int, prefetch: int) -> bytes:
    return method(channel, BASIC_QOS, struct.pack(">IHB", 0, prefetch, 0))


def consume(channel: int, queue: str, tag: str) -> bytes:
    # no-local, no-ack, exclusive, no-wait all off: acknowledged deliveries, a reply.
    return method(channel, BASIC_CONSUME, b"\x00\x00" + _shortstr(queue) + _shortstr(tag)
                  + b"\x00" + table({}))


def ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """``basic.ack`` of ``delivery_tag`` (and every one before it when ``multiple``)."""
    payload = _ACK.pack(*BASIC_ACK, delivery_tag, int(multiple))
    return _FRAME.pack(FRAME_METHOD, channel, len(payload)) + payload + bytes((FRAME_END,))


def heartbeat() -> bytes:
    return _HEARTBEAT


def close_ok(channel: int) -> bytes:
    return method(channel, CONNECTION_CLOSE_OK if channel == 0 else CHANNEL_CLOSE_OK)


def connection_close() -> bytes:
    return method(0, CONNECTION_CLOSE, struct.pack(">H", 200) + _shortstr("bye")
                  + struct.pack(">HH", 0, 0))


def close_reason(arguments: bytes) -> str:
    """``connection.close`` / ``channel.close``'s code and text."""
    if len(arguments) < 3:
        return "closed"
    code = arguments[0] << 8 | arguments[1]
    text = arguments[3:3 + arguments[2]].decode("utf-8", "replace")
    return f"{code} {text}"


#: (channel, delivery tag, redelivered, routing key, body)
OnDeliver = Callable[[int, int, bool, str, bytes], None]
#: (channel, (class, method), arguments) for every method that is not a delivery.
OnMethod = Callable[[int, tuple[int, int], bytes], None]


class Parser:
    """Splits a byte stream into frames; every complete delivery is handed over at once.

    A delivery is three frames or more (``basic.deliver``, a content header giving the
    body's size, then body frames up to it), contiguous on their channel; frames of other
    channels may come between, so what is pending is kept per channel.
    """

    def __init__(self, on_deliver: OnDeliver, on_method: OnMethod,
                 max_frame: int = 16 * 2**20) -> None:
        self._on_deliver = on_deliver
        self._on_method = on_method
        self._max_frame = max_frame
        self._buf = b""
        #: Per channel, the delivery whose body is still coming.
        self._pending: dict[int, _Pending] = {}

    def feed(self, data: bytes) -> None:
        """Take one chunk; calls back for each complete delivery and method.

        Raises:
            BrokerError: the stream is not AMQP 0-9-1 as a broker sends it.
        """
        buf = self._buf + data if self._buf else data
        end = len(buf)
        at = 0
        unpack = _FRAME.unpack_from
        while end - at >= 8:
            kind, channel, size = unpack(buf, at)
            stop = at + 7 + size
            if size > self._max_frame:
                raise BrokerError(f"a frame of {size} bytes is over the limit")
            if stop >= end:
                break
            if buf[stop] != FRAME_END:
                raise BrokerError("a frame without its end marker")
            start = at + 7
            at = stop + 1
            if kind == FRAME_METHOD:
                if size < 4:
                    raise BrokerError("a method frame too short for its class and method")
                if buf[start + 1] == 60 and buf[start + 3] == 60 and not buf[start] \
                        and not buf[start + 2]:                     # basic.deliver
                    self._deliver(channel, buf, start + 4, stop)
                else:
                    kind_id = (buf[start] << 8 | buf[start + 1], buf[start + 2] << 8 |
                               buf[start + 3])
                    self._on_method(channel, kind_id, buf[start + 4:stop])
            elif kind == FRAME_HEADER:
                pending = self._pending.get(channel)
                if pending is None or pending.size != -1 or size < 12:
                    raise BrokerError("a content header that follows no delivery")
                pending.size = int.from_bytes(buf[start + 4:start + 12], "big")
                if pending.size == 0:
                    self._done(channel, pending)
            elif kind == FRAME_BODY:
                pending = self._pending.get(channel)
                if pending is None or pending.size == -1:
                    raise BrokerError("a body frame that follows no content header")
                pending.parts.append(buf[start:stop])
                pending.got += size
                if pending.got >= pending.size:
                    self._done(channel, pending)
            elif kind != FRAME_HEARTBEAT:
                raise BrokerError(f"a frame of unknown type {kind}")
        self._buf = buf[at:]

    def _deliver(self, channel: int, buf: bytes, at: int, stop: int) -> None:
        # consumer-tag (shortstr), delivery-tag (longlong), redelivered (octet),
        # exchange (shortstr), routing-key (shortstr)
        at += 1 + buf[at]
        if at + 10 > stop:
            raise BrokerError("a basic.deliver too short")
        tag = int.from_bytes(buf[at:at + 8], "big")
        redelivered = bool(buf[at + 8] & 1)
        at += 9
        at += 1 + buf[at]
        key_end = at + 1 + buf[at]
        if key_end > stop:
            raise BrokerError("a basic.deliver whose routing key runs past it")
        if channel in self._pending:
            raise BrokerError("a delivery before the last one's body came")
        self._pending[channel] = _Pending(tag, redelivered, buf[at + 1:key_end].decode())

    def _done(self, channel: int, pending: _Pending) -> None:
        del self._pending[channel]
        parts = pending.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._on_deliver(channel, pending.tag, pending.redelivered, pending.key, body)


class _Pending:
    """A delivery whose body is still coming: its size is -1 until its content header."""

    __slots__ = ("got", "key", "parts", "redelivered", "size", "tag")

    def __init__(self, tag: int, redelivered: bool, key: str) -> None:
        self.tag, self.redelivered, self.key = tag, redelivered, key
        self.size, self.got = -1, 0
        self.parts: list[bytes] = []
