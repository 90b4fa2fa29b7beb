"""Source ``amqp``: the partition queues of a RabbitMQ cluster, each on a channel of its own.

Every collector consumes every partition; each queue has a single active consumer, so the
broker makes one collector active on it and the others stand by, and hands it to a standby
when the active one's connection dies. RabbitMQ 3.10 gives a queue to whichever consumer
subscribed first and never rebalances, so a collector subscribes first to its own share
(:func:`own_share`) and to the rest ``standby_delay_s`` later: two collectors split the work
and each still stands by for the other's partitions.

A collector counts itself active on a partition from its first delivery there; before that
message is handled, ``on_active(partition)`` runs (the take-over warm-up).

Acknowledge after durable, as the MQTT source: a message's ticket is held by everything it
produced; once released the message is acknowledged, in delivery order per partition (one
``basic.ack`` with ``multiple`` for each settled run). Backpressure is the prefetch: the
broker sends a consumer at most ``amqp.prefetch`` unacknowledged messages.

Per-device order: a device belongs to one community, a community to one partition, a
partition to one consumer that handles its deliveries in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from collector.cluster.acks import Acks, AmqpTicket, background
from collector.cluster.broker import FAILURES, Connection, connect, read_stream, where
from collector.cluster.consumer import ChannelAcks, Consumer
from collector.cluster.stamps import acked_record
from collector.cluster.topology import MQTT_EXCHANGE, Names
from collector.errors import BrokerError
from collector.records import Claim, Inbound
from collector.settings import AmqpSettings

log = logging.getLogger(__name__)


def own_share(instance: str, peers: list[str], partitions: int) -> set[int]:
    """The partitions a collector subscribes to first: round robin over the sorted peers
    when ``instance`` is one of them, else half of them picked by a hash of its name."""
    if instance in peers:
        ranked = sorted(set(peers))
        rank = ranked.index(instance)
        return {n for n in range(partitions) if n % len(ranked) == rank}
    parity = zlib.crc32(instance.encode()) % 2
    return {n for n in range(partitions) if n % 2 == parity}


#: Takes messages with their tickets, a batch at a time (the batch's replicated stamps are
#: confirmed before any of its lines is written, ``app.handle_many``).
Handler = Callable[[Sequence[tuple[Inbound, AmqpTicket]]], Awaitable[None]]
#: At most this many deliveries a batch: the pipeline's per-call costs shared out, and the
#: event loop back (acknowledgements, the socket) every few milliseconds.
TAKE_MAX = 512
#: A delivery as the consumer hands it over: its routing key, body and redelivered flag.
Message = tuple[str, bytes, bool]
#: (partition, message, ticket)
Delivery = tuple[int, Message, AmqpTicket]


class AmqpSource:
    """Consumes the partition queues and feeds every message to a handler."""

    def __init__(self, settings: AmqpSettings, instance: str,
                 on_stall: Callable[[bool], Awaitable[float]] | None = None,
                 stall_flush_ms: float = 3.0) -> None:
        self._settings = settings
        self._names = Names(settings.prefix)
        self._instance = instance
        self._on_stall = on_stall
        self._on_active: Callable[[int], Awaitable[None]] | None = None
        self._on_lost: Callable[[set[int]], None] | None = None
        self._stall_s = stall_flush_ms / 1000
        self._own = own_share(instance, settings.peers, settings.partitions)
        self._taking = True
        self._closed = asyncio.Event()
        self._inbox: deque[Delivery] = deque()
        #: Deliveries of partitions being warmed up, and partitions whose warm-up is done.
        self._warming: dict[int, deque[Delivery]] = {}
        self._ready: deque[int] = deque()
        self._arrived = asyncio.Event()
        self._acks: dict[int, Acks] = {}
        #: The consumer's channels: each one's partition and acknowledgements.
        self._channels: dict[int, tuple[int, Acks]] = {}
        self._connection: Connection | None = None
        self._publisher: AbstractChannel | None = None
        self._confirming: AbstractChannel | None = None
        self._node = 0
        #: Partitions this collector is active on (from its first delivery there).
        self.active: set[int] = set()
        #: Alerts not published because the cluster was unreachable (they are in InfluxDB).
        self.alerts_dropped = 0

    def on_partition(self, active: Callable[[int], Awaitable[None]],
                     lost: Callable[[set[int]], None]) -> None:
        """``active(n)`` runs before the first message of a partition newly held is
        handled (the take-over warm-up); ``lost(partitions)`` when they are no longer."""
        self._on_active, self._on_lost = active, lost

    @property
    def unacknowledged(self) -> int:
        return sum(len(acks) for acks in self._acks.values())

    def metrics(self) -> dict[str, int]:
        return {"unacknowledged": self.unacknowledged, "partitions_active": len(self.active),
                "alerts_dropped": self.alerts_dropped}

    def stop_taking(self) -> None:
        self._taking = False

    def close(self) -> None:
        self._closed.set()

    def publish(self, topic: str, payload: bytes) -> None:
        """An alert to ``amq.topic`` under the routing key the MQTT plugin gives ``topic``,
        so operators' MQTT clients receive it; not waited for (it is in InfluxDB too)."""
        if self._publisher is None or self._publisher.is_closed:
            self.alerts_dropped += 1
            return
        background(self._publish(self._publisher, topic, payload))

    async def _publish(self, channel: AbstractChannel, topic: str, payload: bytes) -> None:
        try:
            exchange = await channel.get_exchange(MQTT_EXCHANGE, ensure=False)
            await exchange.publish(aio_pika.Message(payload, delivery_mode=2),
                                   routing_key=topic.replace("/", "."))
        except FAILURES as exc:
            self.alerts_dropped += 1
            log.debug("alert on %s not published (%s)", topic, exc)

    async def keep(self, body: bytes, headers: dict[str, Any]) -> None:
        """Append a refusal to the dead-letter stream, confirmed (see :meth:`append`)."""
        await self.append(self._names.deadletters, [body], headers)

    async def append(self, exchange: str, bodies: list[bytes],
                     headers: dict[str, Any] | None = None, routing_key: str = "") -> None:
        """Publish ``bodies`` to ``exchange`` ("": the default one, which routes to the queue
        named ``routing_key``) and wait for the broker's confirms, across reconnects: what
        depends on them (an acknowledgement, a write) waits until they are replicated."""
        delay = self._settings.reconnect_min_s
        while True:
            channel = self._confirming
            if channel is not None and not channel.is_closed:
                try:
                    target = channel.default_exchange if not exchange \
                        else await channel.get_exchange(exchange, ensure=False)
                    await asyncio.gather(*(target.publish(aio_pika.Message(
                        body, headers=headers, delivery_mode=2), routing_key=routing_key)
                        for body in bodies))
                    return
                except FAILURES as exc:
                    log.warning("%s: not confirmed yet (%s); retrying",
                                exchange or routing_key, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._settings.reconnect_max_s)

    def _stamps_acked(self, n: int) -> Callable[[list[str]], None]:
        """Names the stamps of acknowledged messages in partition ``n``'s stamp stream
        (not waited for)."""
        def acked(ids: list[str]) -> None:
            channel = self._publisher
            if channel is not None and not channel.is_closed:
                background(self._publish_to(channel, self._names.stamps(n),
                                             acked_record(ids)))
        return acked

    async def _publish_to(self, channel: AbstractChannel, queue: str, body: bytes) -> None:
        try:
            await channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2),
                                                   routing_key=queue)
        except FAILURES as exc:
            log.debug("record to %s not published (%s)", queue, exc)

    async def record_stamps(self, batch: Sequence[tuple[Inbound, Claim]],
                            records: list[tuple[int, bytes]], given: dict[int, list[str]]
                            ) -> None:
        """Before a batch's stamped readings are written: their stamps replicated in their
        partitions' stamp streams (one append a partition), and each message's ticket given
        the ids of its own stamps (named in an ``acked`` record once it is acknowledged)."""
        for n in sorted({n for n, _ in records}):
            await self.append("", [body for m, body in records if m == n],
                              routing_key=self._names.stamps(n))
        for msg, ticket in batch:
            ids = given.get(id(msg))
            if ids and isinstance(ticket, AmqpTicket):
                ticket.stamps = ids

    async def read(self, stream: str, since: datetime) -> list[bytes]:
        """The records of ``stream`` (a partition's stamps or detector state) since
        ``since``, oldest first."""
        connection = self._connection
        if connection is None:
            return []
        return [record.body for record in await read_stream(connection, stream, since=since)]

    async def run(self, handle: Handler) -> None:
        """Consume until closed; on a lost connection the next node is tried, with backoff."""
        delay = self._settings.reconnect_min_s
        while self._taking:
            try:
                await self._session(handle)
                delay = self._settings.reconnect_min_s
            except BrokerError as exc:
                pause = delay * random.uniform(0.5, 1.0)
                log.warning("AMQP: %s; retrying in %.1f s", exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), pause)
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _session(self, handle: Handler) -> None:
        connection, self._node = await connect(self._settings, self._node,
                                               f"sct collector {self._instance}")
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_close(*_: object) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.close_callbacks.add(on_close)
        self._connection = connection
        # The partitions are consumed on a connection of our own to the same node
        # (consumer.py); aio-pika's carries the rest (alerts, confirms, streams).
        consumer = Consumer(self._delivered)
        consumer.lost.add_done_callback(on_close)
        try:
            await consumer.open(self._settings.credentials(self._settings.urls[self._node]),
                                f"sct collector {self._instance} (partitions)",
                                self._settings.connect_timeout_s)
            self._publisher = await connection.channel()
            self._confirming = await connection.channel(publisher_confirms=True)
            log.info("connected to RabbitMQ at %s as %s", where(self._settings.urls[self._node]),
                     self._instance)
            tasks: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(self._subscribe(consumer)),
                asyncio.ensure_future(self._take(handle)), lost,
                asyncio.ensure_future(self._closed.wait())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks[:2]:
                    if task.done() and task.exception():
                        raise BrokerError(str(task.exception())) from task.exception()
            finally:
                for task in tasks:
                    task.cancel()
        except FAILURES as exc:
            raise BrokerError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._lose_partitions()
            self._connection = self._publisher = self._confirming = None
            consumer.close()
            with contextlib.suppress(*FAILURES):
                await connection.close()
        if lost.done() and self._taking:
            self._node += 1
            raise BrokerError(f"connection to {where(self._settings.urls[self._node - 1])} "
                              "lost")

    def _lose_partitions(self) -> None:
        for acks in self._acks.values():
            acks.close()
        self._acks.clear()
        self._channels.clear()
        self._inbox.clear()     # not acknowledged: delivered again
        self._warming.clear()
        self._ready.clear()
        if self.active:
            log.warning("no longer active on partitions %s", sorted(self.active))
            if self._on_lost is not None:
                self._on_lost(set(self.active))
        self.active.clear()

    async def _subscribe(self, consumer: Consumer) -> None:
        own = sorted(self._own)
        rest = sorted(set(range(self._settings.partitions)) - self._own)
        for n in own:
            await self._consume(consumer, n)
        log.info("subscribed to partitions %s (own share); to the rest in %.0f s",
                 own, self._settings.standby_delay_s)
        await asyncio.sleep(self._settings.standby_delay_s)
        for n in rest:
            await self._consume(consumer, n)
        log.info("standing by on partitions %s", rest)
        await asyncio.Future()   # keeps the session's task set until it ends

    async def _consume(self, consumer: Consumer, n: int) -> None:
        channel = consumer.next_channel
        # Registered before the consume is asked for: a delivery may follow its reply at once.
        acks = self._acks[n] = Acks(ChannelAcks(consumer, channel), self._stamps_acked(n))
        self._channels[channel] = (n, acks)
        opened = await consumer.channel(self._names.partition(n), self._settings.prefetch,
                                        f"{self._instance}.{n}",
                                        self._settings.connect_timeout_s)
        assert opened == channel

    def _delivered(self, channel: int, tag: int, redelivered: bool, key: str,
                   body: bytes) -> None:
        """A delivery, in the order deliveries came (the consumer calls back as it parses)."""
        known = self._channels.get(channel)
        if known is None:       # the session is ending: left unacknowledged, delivered again
            return
        n, acks = known
        self._inbox.append((n, (key, body, redelivered), acks.track(tag)))
        self._arrived.set()

    async def _take(self, handle: Handler) -> None:
        """Hand the deliveries to ``handle`` in order, in batches: a run of deliveries of
        partitions already active, up to ``TAKE_MAX``. A partition newly held is warmed up
        (``on_active``) in a task of its own while its deliveries wait, in order, and the
        other partitions go on."""
        inbox = self._inbox
        while self._taking:
            if self._ready:
                waited = self._warming.pop(self._ready.popleft(), deque())
                while waited:
                    await self._handle(handle, [waited.popleft() for _ in
                                                range(min(TAKE_MAX, len(waited)))])
                continue
            if not inbox:
                await self._wait_or_stall()
                continue
            batch: list[Delivery] = []
            while inbox and len(batch) < TAKE_MAX:
                n = inbox[0][0]
                if n in self._warming:
                    self._warming[n].append(inbox.popleft())
                elif n not in self.active:
                    self._warming[n] = deque([inbox.popleft()])
                    self._activate(n)
                else:
                    batch.append(inbox.popleft())
            if batch:
                await self._handle(handle, batch)
        await self._closed.wait()

    async def _handle(self, handle: Handler, batch: list[Delivery]) -> None:
        now_ms = int(time.time() * 1000)
        await handle([(Inbound(key.replace(".", "/"), body, now_ms, redelivered), ticket)
                      for _, (key, body, redelivered), ticket in batch])

    def _activate(self, n: int) -> None:
        self.active.add(n)
        log.info("active on partition %d (%s)", n,
                 "own share" if n in self._own else "taken over")

        async def warm() -> None:
            try:
                if self._on_active is not None:
                    await self._on_active(n)
            finally:
                if n in self._warming:
                    self._ready.append(n)
                    self._arrived.set()

        background(warm())

    async def _wait_or_stall(self) -> None:
        self._arrived.clear()
        if self._ready:
            return
        if self.unacknowledged and self._on_stall is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), self._stall_s)
                return
            full = any(len(acks) >= self._settings.prefetch for acks in self._acks.values())
            while wait := await self._on_stall(full):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), wait)
                    return
        await self._arrived.wait()
