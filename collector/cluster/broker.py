"""Connecting to the cluster (its nodes tried in turn) and reading its streams.

A stream is read without being consumed: a consumer from an offset, acknowledging as it
goes. A stream does not say how long it is (its declare-ok counts 0), so the reader first
subscribes at ``last`` (the last chunk) to learn the last offset, then reads up to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiormq.abc
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from collector.errors import BrokerError
from collector.settings import AmqpSettings

log = logging.getLogger(__name__)

Connection = aio_pika.abc.AbstractConnection
#: What connecting or talking to a node can raise.
FAILURES = (AMQPError, ChannelInvalidStateError, OSError, asyncio.TimeoutError,
            ConnectionError)


def where(url: str) -> str:
    """A node's URL without its credentials, for logs."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}"


async def connect(settings: AmqpSettings, first: int = 0,
                  name: str = "sct") -> tuple[Connection, int]:
    """A connection to the first node of ``urls`` (starting at ``first``) that answers,
    and that node's index.

    Raises:
        BrokerError: no node answered; says why for each.
    """
    failures = []
    count = len(settings.urls)
    for step in range(count):
        index = (first + step) % count
        url = settings.urls[index]
        try:
            connection: Connection = await aio_pika.connect(
                settings.credentials(url), timeout=settings.connect_timeout_s,
                client_properties={"connection_name": name})
            return connection, index
        except FAILURES as exc:
            failures.append(f"{where(url)}: {type(exc).__name__}: {exc}")
    raise BrokerError("no RabbitMQ node answered: " + "; ".join(failures))


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One message of a stream, as read back."""

    offset: int
    body: bytes
    headers: dict[str, Any]
    routing_key: str
    timestamp_ms: int


#: Stream messages acknowledged at once (a stream needs its consumer's acknowledgements
#: to send more; one each would cost a frame each).
ACK_EVERY = 200


async def read_stream(connection: Connection, name: str, idle_s: float = 0.3,
                      timeout_s: float = 120.0, since: datetime | None = None
                      ) -> list[StreamRecord]:
    """Every message of stream ``name`` (``since`` a time: from the chunk holding it),
    oldest first, leaving it as it is (on a channel of its own)."""
    channel = await (await connection.channel()).get_underlay_channel()
    try:
        await channel.basic_qos(prefetch_count=2 * ACK_EVERY)
        last = await _records(channel, name, "last", None, idle_s, timeout_s)
        if not last:
            return []
        end = max(record.offset for record in last)
        return await _records(channel, name, since or "first", end, idle_s, timeout_s)
    finally:
        with contextlib.suppress(*FAILURES):
            await channel.close()


async def _records(channel: aiormq.abc.AbstractChannel, name: str, start: str | datetime,
                   end: int | None, idle_s: float, timeout_s: float) -> list[StreamRecord]:
    got: list[StreamRecord] = []
    done = asyncio.Event()
    heard = asyncio.Event()
    unacked = 0

    async def on_message(message: DeliveredMessage) -> None:
        nonlocal unacked
        properties = message.header.properties
        headers = dict(properties.headers or {})
        raw = headers.get("x-stream-offset")
        offset = raw if isinstance(raw, int) else -1
        stamp = properties.timestamp
        if end is None or offset <= end:
            got.append(StreamRecord(offset, message.body, headers, message.routing_key or "",
                                    int(stamp.timestamp() * 1000) if stamp else 0))
        heard.set()
        unacked += 1
        finished = end is not None and offset >= end
        if unacked >= ACK_EVERY or finished:
            unacked = 0
            tag = getattr(message.delivery, "delivery_tag", None) or 0
            await channel.basic_ack(tag, multiple=True)
        if finished:
            done.set()

    consume = await channel.basic_consume(name, on_message,
                                          arguments={"x-stream-offset": start})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while not done.is_set():
            heard.clear()
            # A stream delivers what it holds at once: a quiet moment means it is all here
            # (from a time after the last message nothing comes at all).
            if loop.time() > deadline:
                raise BrokerError(f"stream {name}: offset {end} not reached within "
                                  f"{timeout_s:.0f} s")
            try:
                await asyncio.wait_for(heard.wait(), idle_s)
            except TimeoutError:
                break
    finally:
        with contextlib.suppress(*FAILURES):
            await channel.basic_cancel(consume.consumer_tag or "")
    return got
