"""MQTT 3.1.1 on the wire: the packets the collector sends, and a parser for what it receives.

Sans-io: bytes in, callbacks out; no sockets and no event loop (``source.py`` owns those).
Only what a QoS 1 subscriber that also publishes its alerts needs: CONNECT, CONNACK,
PUBLISH (QoS 0 and 1 in; QoS 1 out), PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP,
DISCONNECT. The point of having it is speed: :meth:`Parser.feed` handles every complete
packet in each chunk read from the socket, so one wake-up of the event loop takes hundreds
of messages where aiomqtt 2 took one (figures in the README, section Performance).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from collector.errors import BrokerError

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

#: CONNACK return codes of MQTT 3.1.1, for error messages.
CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected",
                 3: "server unavailable", 4: "bad user name or password",
                 5: "not authorised"}

_PUBACK = struct.Struct(">BBH")


def _length(n: int) -> bytes:
    """MQTT's variable-length 'remaining length'."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


def connect(client_id: str, keepalive_s: int, clean_session: bool,
            username: str | None = None, password: str | None = None) -> bytes:
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | \
        (0x40 if password is not None else 0)
    body = _string("MQTT") + bytes((4, flags)) + struct.pack(">H", keepalive_s) + \
        _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT << 4, body)


def subscribe(packet_id: int, filters: list[str], qos: int) -> bytes:
    body = struct.pack(">H", packet_id) + b"".join(_string(f) + bytes((qos,)) for f in filters)
    return _packet(SUBSCRIBE << 4 | 0x02, body)


def publish(topic: str, payload: bytes, packet_id: int, dup: bool = False) -> bytes:
    """A QoS 1 PUBLISH; ``dup`` when it is sent again after a reconnect."""
    return _packet(PUBLISH << 4 | 0x02 | (0x08 if dup else 0),
                   _string(topic) + struct.pack(">H", packet_id) + payload)


def pubacks(packet_ids: list[int]) -> bytes:
    """The PUBACKs of several messages, as one write."""
    pack = _PUBACK.pack
    return b"".join([pack(0x40, 2, pid) for pid in packet_ids])


#: (topic, payload, packet id (0 at QoS 0), dup flag)
OnPublish = Callable[[str, bytes, int, bool], None]
#: (packet type, body) for every packet that is not a PUBLISH.
OnControl = Callable[[int, bytes], None]

#: What a broker may send a client (MQTT 3.1.1, 2.2.1); anything else breaks the protocol.
FROM_BROKER = {CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP, 5, 6, 7, 11}


class Parser:
    """Splits a byte stream into packets; every complete one is handed over at once."""

    def __init__(self, on_publish: OnPublish, on_control: OnControl,
                 max_packet: int = 16 * 2**20) -> None:
        self._on_publish = on_publish
        self._on_control = on_control
        self._max_packet = max_packet
        self._buf = b""

    def feed(self, data: bytes) -> None:
        """Take one chunk; calls back for each complete packet, keeps any partial tail.

        Raises:
            BrokerError: the stream is not MQTT (bad length, QoS 2, oversized packet).
        """
        buf = self._buf + data if self._buf else data
        end = len(buf)
        at = 0
        on_publish = self._on_publish
        while end - at >= 2:
            first = buf[at]
            # The remaining length: one byte almost always, up to four.
            length = buf[at + 1]
            head = at + 2
            if length & 0x80:
                if end - at >= 3 and not buf[at + 2] & 0x80:
                    # Two bytes (128 B to 16 KB): a reading of every field of its kind, so
                    # the common case, read inline (a call was 7 % of a drain's samples).
                    length = (length & 0x7F) | buf[at + 2] << 7
                    head = at + 3
                else:
                    length, head = self._long_length(buf, at + 1, end)
                    if head < 0:
                        break
                if length > self._max_packet:
                    raise BrokerError(f"a packet of {length} bytes is over the limit")
            stop = head + length
            if stop > end:
                break
            if first >> 4 == PUBLISH:
                qos = (first >> 1) & 3
                topic, topic_end = self._topic(buf, head, stop)
                if qos == 0:
                    on_publish(topic, buf[topic_end:stop], 0, False)
                elif qos == 1:
                    if topic_end + 2 > stop:
                        raise BrokerError("a QoS 1 PUBLISH without its packet id")
                    packet_id = buf[topic_end] << 8 | buf[topic_end + 1]
                    on_publish(topic, buf[topic_end + 2:stop], packet_id, bool(first & 0x08))
                else:
                    raise BrokerError("the broker sent a QoS 2 message on a QoS 1 subscription")
            elif first >> 4 in FROM_BROKER:
                self._on_control(first >> 4, buf[head:stop])
            else:
                raise BrokerError(f"the broker sent packet type {first >> 4}, which a broker "
                                  "never sends")
            at = stop
        self._buf = buf[at:]

    @staticmethod
    def _topic(buf: bytes, head: int, stop: int) -> tuple[str, int]:
        """A PUBLISH's topic and where it ends."""
        if stop - head < 2:
            raise BrokerError("a PUBLISH too short to hold its topic")
        end = head + 2 + (buf[head] << 8 | buf[head + 1])
        if end > stop:
            raise BrokerError("a PUBLISH whose topic runs past the packet")
        try:
            return buf[head + 2:end].decode(), end
        except UnicodeDecodeError as exc:
            raise BrokerError(f"a PUBLISH whose topic is not UTF-8 ({exc})") from exc

    def _long_length(self, buf: bytes, at: int, end: int) -> tuple[int, int]:
        """(length, index after it), or (0, -1) when the length is not all here yet."""
        length, shift = 0, 0
        for i in range(at, min(at + 4, end)):
            length |= (buf[i] & 0x7F) << shift
            if not buf[i] & 0x80:
                return length, i + 1
            shift += 7
        if end - at >= 4:
            raise BrokerError("malformed remaining length")
        return 0, -1
