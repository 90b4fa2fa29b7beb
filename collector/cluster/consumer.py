"""The partition consumer's own AMQP connection, on asyncio's transport and ``amqpwire``.

One connection per session (to the node the aio-pika connection of ``broker.connect`` went
to), one channel per partition queue: ``basic.qos`` (the prefetch) and ``basic.consume``.
Every delivery of each chunk read is handed to ``on_deliver`` in the order it came, with no
task or object a delivery (aiormq ran a task per delivery and pamqp built objects per frame:
about a third of a cluster collector's CPU). Acknowledgements are ``basic.ack`` frames
written at once, so they leave in the order they are made.

No heartbeats of its own (negotiated off): the session's aio-pika connection to the same node
keeps them, and the session ends when either connection does. Anything the broker closes
(a channel, a consumer cancelled, the connection) ends this connection: ``lost`` then holds
the reason, and the source connects again, as when a node goes away.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from urllib.parse import unquote, urlsplit

from collector.cluster import amqpwire as wire
from collector.errors import BrokerError
from collector.source import awaited, lose


class Consumer(asyncio.Protocol):
    """One consuming connection; :meth:`open`, then a :meth:`channel` per queue."""

    def __init__(self, on_deliver: wire.OnDeliver) -> None:
        self._on_deliver = on_deliver
        self._parser = wire.Parser(on_deliver, self._on_method)
        self._transport: asyncio.Transport | None = None
        self._replies: dict[tuple[int, tuple[int, int]], asyncio.Future[bytes]] = {}
        self._next_channel = 1
        self._channel_max = 2047
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except BrokerError as exc:
            self._fail(BrokerError(f"the broker broke the protocol ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(BrokerError(f"AMQP consumer connection lost ({exc or 'closed'})"))

    # the parser's side
    def _on_method(self, channel: int, kind: tuple[int, int], arguments: bytes) -> None:
        if kind in (wire.CONNECTION_CLOSE, wire.CHANNEL_CLOSE):
            self.write(wire.close_ok(channel))
            what = "the connection" if channel == 0 else f"channel {channel}"
            self._fail(BrokerError(f"the broker closed {what}: "
                                   f"{wire.close_reason(arguments)}"))
        elif kind == wire.BASIC_CANCEL:
            self._fail(BrokerError(f"the broker cancelled the consumer of channel {channel}"))
        else:
            reply = self._replies.pop((channel, kind), None)
            if reply is not None and not reply.done():
                reply.set_result(arguments)

    # the source's side
    async def open(self, url: str, name: str, timeout_s: float) -> None:
        """Connect to the node at ``url`` (``amqp://user:password@host:port/vhost``) and
        open the connection.

        Raises:
            BrokerError: no connection, refused, or no answer within ``timeout_s``.
        """
        parts = urlsplit(url)
        context = ssl.create_default_context() if parts.scheme == "amqps" else None
        default_port = 5671 if context else 5672
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: self, parts.hostname or "127.0.0.1", parts.port or default_port,
                ssl=context),
                timeout_s)
        except (OSError, TimeoutError) as exc:
            raise BrokerError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        await self._request(wire.PROTOCOL_HEADER, 0, wire.CONNECTION_START, timeout_s)
        tune = await self._request(
            wire.start_ok(unquote(parts.username or "guest"),
                          unquote(parts.password or "guest"), name),
            0, wire.CONNECTION_TUNE, timeout_s)
        if len(tune) < 8:
            raise BrokerError("a connection.tune too short")
        channel_max, frame_max, _ = struct.unpack_from(">HIH", tune)
        self._channel_max = channel_max or 2047
        self.write(wire.tune_ok(self._channel_max, frame_max, 0))
        await self._request(wire.connection_open(vhost), 0, wire.CONNECTION_OPEN_OK,
                            timeout_s)

    @property
    def next_channel(self) -> int:
        """The number the next :meth:`channel` gets."""
        return self._next_channel

    async def channel(self, queue: str, prefetch: int, tag: str, timeout_s: float) -> int:
        """A channel consuming ``queue`` with ``prefetch`` unacknowledged deliveries at most,
        as consumer ``tag``; its number."""
        number = self._next_channel
        if number > self._channel_max:
            raise BrokerError(f"the broker allows {self._channel_max} channels")
        self._next_channel += 1
        await self._request(wire.channel_open(number), number, wire.CHANNEL_OPEN_OK, timeout_s)
        await self._request(wire.qos(number, prefetch), number, wire.BASIC_QOS_OK, timeout_s)
        await self._request(wire.consume(number, queue, tag), number, wire.BASIC_CONSUME_OK,
                            timeout_s)
        return number

    def ack(self, channel: int, delivery_tag: int, multiple: bool) -> None:
        """Acknowledge now (written before returning: in the order made).

        Raises:
            ConnectionError: the connection is gone (the broker delivers them again).
        """
        if self.lost.done():
            raise ConnectionError("the consumer connection is closed")
        self.write(wire.ack(channel, delivery_tag, multiple))

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Close the connection (unacknowledged deliveries go back to their queues)."""
        lose(self.lost, BrokerError("closed"))
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire.connection_close())
            self._transport.close()

    async def _request(self, packet: bytes, channel: int, reply_kind: tuple[int, int],
                       timeout_s: float) -> bytes:
        reply = self._replies[(channel, reply_kind)] = \
            asyncio.get_running_loop().create_future()
        self.write(packet)
        return await awaited(reply, self.lost, timeout_s)

    def _fail(self, exc: BrokerError) -> None:
        lose(self.lost, exc)
        if self._transport is not None:
            self._transport.abort()


class ChannelAcks:
    """A consumer channel as :class:`~collector.cluster.acks.Acks` acknowledges on it."""

    __slots__ = ("_channel", "_consumer")

    def __init__(self, consumer: Consumer, channel: int) -> None:
        self._consumer, self._channel = consumer, channel

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._consumer.ack(self._channel, delivery_tag, multiple)
