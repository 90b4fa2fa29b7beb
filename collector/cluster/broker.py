"""Connecting to the cluster (its nodes tried in turn) and reading its streams.

A stream is read without being consumed: a consumer from an offset, acknowledging as it
goes. A stream does not say how long it is (its declare-ok counts 0), so the reader first
subscribes at ``last`` (the last chunk) to learn the last offset, then reads up to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
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


async def read_stream(connection: Connection, name: str, idle_s: float = 0.5,
                      timeout_s: float = 60.0, since: datetime | None = None
                      ) -> list[tuple[int, AbstractIncomingMessage]]:
    """Every message of stream ``name`` (``since`` a time: from the chunk holding it) with
    its offset, oldest first, leaving it as it is (on a channel of its own)."""
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=1000)
        last = await _offsets(channel, name, "last", None, idle_s, timeout_s)
        if not last:
            return []
        end = max(offset for offset, _ in last)
        return await _offsets(channel, name, since or "first", end, idle_s, timeout_s)
    finally:
        with contextlib.suppress(*FAILURES):
            await channel.close()


async def _offsets(channel: AbstractChannel, name: str, start: str | datetime,
                   end: int | None,
                   idle_s: float, timeout_s: float) -> list[tuple[int, AbstractIncomingMessage]]:
    queue = await channel.get_queue(name, ensure=False)
    got: list[tuple[int, AbstractIncomingMessage]] = []
    done = asyncio.Event()
    heard = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        offset = int((message.headers or {}).get("x-stream-offset", -1))  # type: ignore[arg-type]
        await message.ack()
        if end is None or offset <= end:
            got.append((offset, message))
        heard.set()
        if end is not None and offset >= end:
            done.set()

    tag = await queue.consume(on_message, arguments={"x-stream-offset": start})
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
            await queue.cancel(tag)
    return got
