"""Source: the MQTT subscription, on asyncio's transport and our own wire code (``mqttwire``).

QoS 1, a persistent session (fixed client id, clean session off) so the broker keeps what
arrives while the collector is away, and reconnection with capped, jittered exponential
backoff. Each message becomes an :class:`Inbound` and is handed to the pipeline with a
:class:`Ticket`.

Why not aiomqtt: it reads one packet per wake-up of the event loop (about 4,200 QoS 1
messages/s here, against Mosquitto's 70,000+); this reads every complete packet of each
chunk the socket gives (before/after figures: README, section Performance).

Acknowledge after durable: a message's PUBACK goes out only when every reading it produced
is written to InfluxDB or fsynced to the spool (each holds the ticket until then), in the
order the messages came in, as MQTT asks. If the collector dies first, the broker delivers
the message again.

Backpressure: once ``max_pending_messages`` wait for the pipeline the socket is no longer
read (``pause_reading``); the broker holds the rest. Nothing is dropped. That holds from the
CONNACK on: a persistent session's backlog (everything queued while the collector was away)
follows the CONNACK at once, ahead of the SUBACK, so messages are taken while the SUBACK is
still awaited. Waiting for it first meant reading the whole backlog into memory before the
first was taken (200,000 queued readings: 167 MB and four full garbage collections).

Any in-flight window: a broker sends at most so many unacknowledged messages (Mosquitto's
``max_inflight_messages``, 20 by default; RabbitMQ's MQTT ``prefetch``, 10; EMQX's
``max_inflight``), then waits for acknowledgements, which wait for the batch to be written.
So when the broker falls silent for ``stall_flush_ms`` with messages unacknowledged, the
source calls ``on_stall`` (the batcher writes once its batch is ``influx.min_batch_age_ms``
old, or at once when the learnt window is full): the drain rate is the window over the write
latency, not over the 1 s batch age. The source learns the window (``Window``: the same
number of unacknowledged messages at several stalls in a row, each ended right after our
acknowledgements), shows it in the self-metrics and warns once, naming the broker setting to
raise, when it is smaller than a batch.

Gathering a trickle: at live rates each socket read brings a message or two, and a wake-up
of the collector (read, pipeline, batcher, acknowledgements) costs about as much again as the
messages it takes. So when fewer messages wait than one pass takes (``TAKE``), the socket is
not read for a while and what piled up meanwhile is taken in one go: about as long as
``GATHER_FOR`` messages take to arrive, at most ``mqtt.gather_ms`` (250 ms), learnt from what
the gathers bring (``Gathering``; the simulator's mixed fleet at 1,500 messages/s: 59 µs of
CPU a message without, 41 with 20 ms, 28-29 with 250 ms; README Performance). A gather that
brings nothing (a broker waiting for our acknowledgements, or a stream that paused) turns
gathering off for a while: it would only add latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from collector import mqttwire as wire
from collector.errors import BrokerError
from collector.records import Inbound
from collector.settings import MqttSettings

log = logging.getLogger(__name__)


class Settles(Protocol):
    """What a ticket tells when nothing holds it any more (an acknowledgement queue)."""

    def send_settled(self) -> None: ...


class Ticket:
    """One received message's acknowledgement; sent once nothing holds it any more.

    It starts with one hold, the handler's, released when the handler is done with it.
    ``mid`` is the broker's id for the message (MQTT packet id, AMQP delivery tag).
    """

    __slots__ = ("_acks", "_holds", "mid")

    def __init__(self, acks: Settles, mid: int) -> None:
        self._acks = acks
        self.mid = mid
        self._holds = 1

    @property
    def settled(self) -> bool:
        return self._holds == 0

    def hold(self) -> None:
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._acks.send_settled()


#: Alerts published within this long of each other leave in one write.
GATHER_S = 0.005


class _AckQueue:
    """The tickets of one connection, acknowledged strictly in arrival order.

    PUBACKs settled in one turn of the event loop leave in one write (a batch written to
    InfluxDB settles thousands at once; a write each would be a system call each).
    """

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._tickets: deque[Ticket] = deque()
        self._settled: list[int] = []
        self._open = True
        #: ``time.monotonic()`` when PUBACKs last went out.
        self.flushed_at = 0.0

    def __len__(self) -> int:
        return len(self._tickets)

    def track(self, mid: int) -> Ticket:
        ticket = Ticket(self, mid)
        if mid:                       # QoS 0 messages have no packet id and want no ack
            self._tickets.append(ticket)
        return ticket

    def send_settled(self) -> None:
        tickets = self._tickets
        if not self._settled and tickets and tickets[0].settled:
            asyncio.get_running_loop().call_soon(self._flush)
        while tickets and tickets[0].settled:
            self._settled.append(tickets.popleft().mid)

    def _flush(self) -> None:
        if self._open and self._settled:
            self._write(wire.pubacks(self._settled))
            self.flushed_at = time.monotonic()
        self._settled = []

    def close(self) -> None:
        # Packet ids belong to their connection: after it, the broker redelivers instead.
        self._open = False
        self._tickets.clear()


class Outbox:
    """The collector's own QoS 1 publishes (alerts) until the broker acknowledges them.

    Tracked by packet id: on the connection they were sent on until their PUBACK; after a
    reconnect (the session is persistent) they are sent again with DUP and the same id, as
    MQTT 3.1.1 (4.4) asks. While disconnected new ones wait in a bounded queue; past
    ``limit`` the oldest waiting one is dropped and counted (``dropped``): every alert is
    also written to InfluxDB, so an operator loses a notification, never the alert.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._sent: dict[int, tuple[str, bytes]] = {}
        self._waiting: deque[tuple[str, bytes]] = deque()
        self._next_id = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._sent) + len(self._waiting)

    def publish(self, topic: str, payload: bytes, write: Callable[[bytes], None] | None) -> None:
        """Send now when ``write`` is given (connected), else queue for the next connection."""
        if write is None or len(self._sent) >= 65_535:
            self._waiting.append((topic, payload))
            if len(self) > self._limit:
                self._waiting.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("alert outbox full (%d): %d alert messages dropped (they are "
                                "in InfluxDB all the same)", self._limit, self.dropped)
            return
        write(self._send(topic, payload))

    def _send(self, topic: str, payload: bytes) -> bytes:
        while True:
            self._next_id = self._next_id % 65_535 + 1
            if self._next_id not in self._sent:
                break
        self._sent[self._next_id] = (topic, payload)
        return wire.publish(topic, payload, self._next_id)

    def acknowledged(self, body: bytes) -> None:
        """A PUBACK for one of ours."""
        if len(body) >= 2:
            self._sent.pop(body[0] << 8 | body[1], None)

    def resume(self, write: Callable[[bytes], None]) -> None:
        """On a new connection: what was sent and not acknowledged again with DUP, then
        what waited."""
        again = [wire.publish(topic, payload, pid, dup=True)
                 for pid, (topic, payload) in self._sent.items()]
        waiting, self._waiting = self._waiting, deque()
        fresh = [self._send(topic, payload) for topic, payload in waiting]
        if again or fresh:
            write(b"".join(again + fresh))


class _Connection(asyncio.Protocol):
    """One connection to the broker: parses what arrives, queues messages for the consumer."""

    def __init__(self, high_water: int, outbox: Outbox | None = None) -> None:
        self.outbox = outbox if outbox is not None else Outbox()
        self.inbox: deque[tuple[Inbound, Ticket]] = deque()
        self.acks = _AckQueue(self.write)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_heard = time.monotonic()
        #: The SUBACK came (the subscription holds); until then only the session's backlog
        #: arrives, which is taken all the same.
        self.subscribed = False
        #: The CONNACK came (alerts may be published), and the SUBSCRIBE's reply to come.
        self.connected = False
        self.suback: asyncio.Future[bytes] | None = None
        self._parser = wire.Parser(self._on_publish, self._on_control)
        self._high_water = high_water
        self._transport: asyncio.Transport | None = None
        self._replies: dict[int, asyncio.Future[bytes]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._stopped = False
        self._soon: list[bytes] = []

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        try:
            self._parser.feed(data)
        except BrokerError as exc:
            # Not MQTT: drop the connection (``run`` makes a new one); nothing escapes
            # into the event loop.
            log.error("the broker broke the protocol (%s); reconnecting", exc)
            self._fail(exc)
            return
        if self.inbox:
            self._wake()
            if not self._paused and len(self.inbox) >= self._high_water:
                self._set_paused(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(BrokerError(f"connection lost ({exc or 'closed by the broker'})"))

    # the parser's side
    def _on_publish(self, topic: str, payload: bytes, packet_id: int, dup: bool) -> None:
        # The clock is read per message, not per chunk: a reading without ``ts`` is stamped
        # with it, and two messages of one device in one chunk must not share a timestamp
        # (the second point would overwrite the first).
        self.inbox.append((Inbound(topic, payload, int(time.time() * 1000), dup, packet_id),
                           self.acks.track(packet_id)))

    def _on_control(self, kind: int, body: bytes) -> None:
        if kind == wire.PUBACK:
            self.outbox.acknowledged(body)
            return
        reply = self._replies.pop(kind, None)
        if reply is not None and not reply.done():
            reply.set_result(body)

    # the consumer's side
    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def write_soon(self, data: bytes) -> None:
        """Write within ``GATHER_S``, with whatever else is written so meanwhile: alerts
        raised by a trickle of messages, each its own turn of the event loop, then leave a
        few in one system call instead of one each (issue 15: their writes were 7 % of a
        live fleet's collector CPU). Unacknowledged until their PUBACK, so one lost with
        the connection is sent again after the next (``Outbox``)."""
        if not self._soon:
            asyncio.get_running_loop().call_later(GATHER_S, self._write_gathered)
        self._soon.append(data)

    def _write_gathered(self) -> None:
        if self._soon:
            data, self._soon = b"".join(self._soon), []
            self.write(data)

    def send(self, packet: bytes, reply_kind: int) -> asyncio.Future[bytes]:
        """Send a packet; the future of the broker's reply of ``reply_kind`` (see
        :meth:`reply`)."""
        reply = self._replies[reply_kind] = asyncio.get_running_loop().create_future()
        self.write(packet)
        return reply

    async def request(self, packet: bytes, reply_kind: int, timeout_s: float) -> bytes:
        """Send a packet and wait for the broker's reply of ``reply_kind``."""
        return await self.reply(self.send(packet, reply_kind), timeout_s)

    async def reply(self, reply: asyncio.Future[bytes], timeout_s: float) -> bytes:
        """The reply :meth:`send` asked for, within ``timeout_s`` (see :func:`awaited`)."""
        return await awaited(reply, self.lost, timeout_s)

    async def wait_for_messages(self, timeout_s: float | None = None) -> bool:
        """True once the inbox has something, False after ``timeout_s`` without; raises
        BrokerError when the connection is gone."""
        while not self.inbox:
            if self.lost.done():
                self.lost.result()
            self._waiter = asyncio.get_running_loop().create_future()
            done, _ = await asyncio.wait((self._waiter, self.lost), timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                return False
        return True

    async def gather(self, seconds: float) -> None:
        """Leave the socket unread for ``seconds``, then read what piled up (see the module's
        docstring). Not while paused for backpressure or stopped: that stays as it is."""
        transport = self._transport
        if transport is None or self._paused or transport.is_closing():
            return
        transport.pause_reading()
        try:
            await asyncio.sleep(seconds)
        finally:
            if not self._paused and not transport.is_closing():
                transport.resume_reading()
        # Read what piled up before going on: the first turn of the loop finds the socket
        # readable and queues its reader after this task; the second runs it.
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    def resume_if_drained(self) -> None:
        """Read the socket again once the inbox is down to half the high-water mark."""
        if self._paused and not self._stopped and len(self.inbox) <= self._high_water // 2:
            self._set_paused(False)

    def stop_reading(self) -> None:
        """Take nothing more from the broker; acknowledgements still go out."""
        self._stopped = True
        self._set_paused(True)

    def close(self) -> None:
        self.acks.close()
        self._write_gathered()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire.DISCONNECT_PACKET)
            self._transport.close()

    def _set_paused(self, paused: bool) -> None:
        if self._transport is not None and not self._transport.is_closing() and \
                paused != self._paused:
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()
        self._paused = paused

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BrokerError) -> None:
        lose(self.lost, exc)
        if self._transport is not None:
            self._transport.abort()


async def awaited(reply: asyncio.Future[bytes], lost: asyncio.Future[None],
                  timeout_s: float) -> bytes:
    """A broker's reply to a request, within ``timeout_s``, on a connection that fails
    ``lost`` when it goes (this source's and the cluster's own AMQP consumer's).

    Raises:
        BrokerError: the connection is lost (its reason), or no reply came in time.
    """
    done, _ = await asyncio.wait((reply, lost), timeout=timeout_s,
                                 return_when=asyncio.FIRST_COMPLETED)
    if reply in done:
        return bytes(reply.result())
    reply.cancel()
    if lost.done():
        lost.result()        # raises the reason
    raise BrokerError(f"no answer from the broker within {timeout_s:.0f} s")


def lose(lost: asyncio.Future[None], exc: BrokerError) -> None:
    """Fail a connection's ``lost`` future with ``exc`` (once; retrieved, so an unawaited
    one logs no "never retrieved" warning)."""
    if not lost.done():
        lost.set_exception(exc)
        lost.exception()


#: Takes the messages of a batch with their tickets, in order.
Handler = Callable[[Sequence[tuple[Inbound, Ticket]]], Awaitable[None]]

#: What is handed over at once: what arrived, up to this many messages or this many payload
#: bytes (at least one message). Measured: single readings cost the least in batches of about
#: 64 messages, arrays of 50 readings in batches of one to four (a batch's data must stay in
#: the CPU's caches from one stage to the next).
TAKE = 64
TAKE_BYTES = 16_384


class Gathering:
    """How long a trickle is left to pile up in the socket (the module's docstring).

    A gather lasts about as long as ``GATHER_FOR`` messages take to arrive at the rate the
    gathers before it saw, and at most ``longest_s`` (``mqtt.gather_ms``): a wake-up of the
    collector has a cost of its own (about 0.4 ms here, measured on the simulator's mixed
    fleet; README, Performance), which a pass of a few hundred messages makes small, while a
    fast stream gathers for a few milliseconds only, and a slow one (under ``GATHER_WORTH``
    messages in the longest gather) for ``GATHER_FIRST_S``. A gather that brought nothing (a broker
    waiting for our acknowledgements, or a stream that paused) turns gathering off, for
    ``GATHER_BACKOFF_S`` and twice as long each time in a row up to ``GATHER_BACKOFF_MAX_S``:
    there it would only add latency."""

    def __init__(self, longest_s: float) -> None:
        self.longest_s = longest_s
        #: The next gather's length: learnt from what the gathers bring. Short to start
        #: with: the first messages may be the start of a flood (a backlog after an outage),
        #: whose first gathers would each add their length to its latency.
        self.seconds = min(longest_s, GATHER_FIRST_S)
        self._off_until = 0.0
        self._backoff_s = GATHER_BACKOFF_S
        #: Gathers that brought nothing, since start.
        self.empty = 0

    def due(self, now: float) -> bool:
        return self.longest_s > 0 and now >= self._off_until

    def brought(self, messages: int, now: float) -> None:
        """The gather just ended brought ``messages``."""
        if messages == 0:
            self.empty += 1
            self._off_until = now + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, GATHER_BACKOFF_MAX_S)
            return
        self._backoff_s = GATHER_BACKOFF_S
        rate = messages / self.seconds      # what this one saw
        if rate * self.longest_s < GATHER_WORTH:
            # So slow that even the longest gather would bring a handful: the wake-ups it
            # saves cost next to nothing, and each gather would only add its latency.
            self.seconds = min(self.longest_s, GATHER_FIRST_S)
            return
        wanted = GATHER_FOR / rate
        # Half-way (geometrically) towards it: one burst or lull does not swing it.
        self.seconds = min(self.longest_s, max(GATHER_MIN_S, (self.seconds * wanted) ** 0.5))


#: A gather lasts about as long as this many messages take to arrive.
GATHER_FOR = 512
#: The first gather's length (at most the longest), and the length of every one while the
#: rate is so low that the longest would bring fewer than ``GATHER_WORTH`` messages.
GATHER_FIRST_S = 0.02
GATHER_WORTH = 16
#: Its shortest: a stream that fast fills a pass on its own.
GATHER_MIN_S = 0.0005
#: After a gather that brought nothing, none for this long; doubled each time in a row.
GATHER_BACKOFF_S = 1.0
GATHER_BACKOFF_MAX_S = 64.0

def _take_some(inbox: deque[tuple[Inbound, Ticket]]) -> list[tuple[Inbound, Ticket]]:
    batch = [inbox.popleft()]
    size = len(batch[0][0].payload)
    while inbox and len(batch) < TAKE and size < TAKE_BYTES:
        batch.append(inbox.popleft())
        size += len(batch[-1][0].payload)
    return batch


#: Stalls in a row with the same number of unacknowledged messages that make it the window.
WINDOW_STALLS = 5
#: Smaller than this it is taken for a quiet moment, not a window.
MIN_WINDOW = 10
#: A broker that waited for acknowledgements answers them at once: new messages within this
#: long after our PUBACKs went out. (A live stream that merely paused resumes whenever its
#: devices next publish, unrelated to our acknowledgements.)
RESUMED_BY_ACK_S = 0.005


class Window:
    """What the source learns of the broker's in-flight window from its stalls.

    A stall is a window when the broker fell silent with the same number of messages
    unacknowledged, and sent again right after our acknowledgements, ``WINDOW_STALLS`` times
    in a row. (A fleet publishing in bursts also stalls with a repeating count, but resumes at
    its own pace, not at our acknowledgements.)
    """

    def __init__(self, batch_hint: int) -> None:
        self._batch_hint = batch_hint
        self._last = 0
        self._repeats = 0
        self._stalled: int | None = None
        #: The window, once seen WINDOW_STALLS times in a row (0: not known, or unlimited).
        self.size = 0
        #: The most messages ever unacknowledged at once.
        self.peak = 0
        self.warned = False

    def stalled(self, unacknowledged: int) -> None:
        """The broker fell silent with ``unacknowledged`` messages waiting for their ack."""
        self.peak = max(self.peak, unacknowledged)
        self._stalled = unacknowledged

    def resumed(self, after_ack_s: float | None) -> None:
        """Messages came again, ``after_ack_s`` after our acknowledgements went out (None
        when none went out since the stall)."""
        unacknowledged, self._stalled = self._stalled, None
        if unacknowledged is None:
            return
        if after_ack_s is None or after_ack_s > RESUMED_BY_ACK_S:
            self._repeats, self._last = 0, 0
            return
        self._repeats = self._repeats + 1 if unacknowledged == self._last else 1
        self._last = unacknowledged
        if self._repeats >= WINDOW_STALLS and unacknowledged >= MIN_WINDOW:
            self.size = unacknowledged
            if unacknowledged < self._batch_hint and not self.warned:
                self.warned = True
                log.warning(
                    "the broker sends at most %d unacknowledged messages, fewer than a batch "
                    "(%d): every batch waits for a round trip and throughput is about %d over "
                    "the write latency. Raise the broker's in-flight window (Mosquitto: "
                    "max_inflight_messages 0; RabbitMQ: mqtt.prefetch; EMQX: max_inflight)",
                    unacknowledged, self._batch_hint, unacknowledged)


class MqttSource:
    """Subscribes to the device topics and feeds every message to a handler.

    ``run`` goes on until :meth:`stop_taking` and then :meth:`close` are called: in between,
    nothing new is taken but acknowledgements of what is being flushed still go out.
    """

    def __init__(self, settings: MqttSettings, filters: list[str],
                 on_stall: Callable[[bool], Awaitable[float]] | None = None,
                 batch_hint: int = 5000) -> None:
        self._settings = settings
        self._filters = filters
        self._on_stall = on_stall
        self._conn: _Connection | None = None
        self._taking = True
        self._closed = asyncio.Event()
        self.window = Window(batch_hint)
        self.gathering = Gathering(settings.gather_ms / 1000)
        #: The collector's own publishes (alerts), kept until the broker acknowledges them.
        self.outbox = Outbox()

    @property
    def unacknowledged(self) -> int:
        """Messages received on this connection and not yet acknowledged."""
        return len(self._conn.acks) if self._conn else 0

    def metrics(self) -> dict[str, int]:
        return {"unacknowledged": self.unacknowledged, "inflight_window": self.window.size,
                "inflight_peak": self.window.peak, "alerts_unacknowledged": len(self.outbox),
                "alerts_dropped": self.outbox.dropped}

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 without waiting (alerts): sent now, or once connected again, and
        again after every reconnect until the broker acknowledges it."""
        conn = self._conn
        connected = conn is not None and conn.connected and not conn.lost.done()
        self.outbox.publish(topic, payload, conn.write_soon if connected and conn else None)

    def stop_taking(self) -> None:
        self._taking = False
        if self._conn is not None:
            self._conn.stop_reading()

    def close(self) -> None:
        self._closed.set()

    async def run(self, handle: Handler) -> None:
        """Receive until closed; reconnect with backoff whenever the broker goes away."""
        delay = self._settings.reconnect_min_s
        while self._taking:
            try:
                await self._session(handle)
                delay = self._settings.reconnect_min_s
            except BrokerError as exc:
                pause = delay * random.uniform(0.5, 1.0)
                log.warning("MQTT connection to %s lost or refused (%s); retrying in %.1f s",
                            self._settings.url, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), pause)
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _session(self, handle: Handler) -> None:
        conn = await self._connect()
        self._conn = conn
        try:
            await self._consume(conn, handle)
        finally:
            self._conn = None
            conn.close()

    async def _connect(self) -> _Connection:
        s = self._settings
        ssl = s.ssl_context()
        conn = _Connection(s.max_pending_messages, self.outbox)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: conn, s.host, s.port, ssl=ssl,
                server_hostname=s.host if ssl else None), s.keepalive_s)
        except (OSError, TimeoutError) as exc:
            raise BrokerError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        try:
            await self._handshake(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        s = self._settings
        password = s.password.get_secret_value() if s.password else None
        connack = await conn.request(
            wire.connect(s.client_id, s.keepalive_s, False, s.username, password),
            wire.CONNACK, s.keepalive_s)
        if len(connack) != 2 or connack[1] != 0:
            code = connack[1] if len(connack) == 2 else -1
            raise BrokerError(f"connection refused: {wire.CONNACK_CODES.get(code, code)}")
        conn.connected = True
        log.info("connected to %s as %s (session %s)", s.url, s.client_id,
                 "resumed" if connack[0] & 1 else "new")
        # Not awaited here: the session's backlog comes ahead of the SUBACK, and is taken
        # meanwhile (module docstring, Backpressure); _subscribed waits for it.
        conn.suback = conn.send(wire.subscribe(1, self._filters, 1), wire.SUBACK)
        self.outbox.resume(conn.write)

    async def _subscribed(self, conn: _Connection) -> None:
        """Wait for the SUBACK while messages are taken; a refusal or none in time ends the
        connection (``BrokerError``), and the next one subscribes again."""
        s = self._settings
        assert conn.suback is not None
        suback = await conn.reply(conn.suback, s.keepalive_s)
        if 0x80 in suback[2:]:
            raise BrokerError(f"subscription refused: {self._filters}")
        conn.subscribed = True
        log.info("subscribed to %s on %s as %s", ", ".join(self._filters), s.url, s.client_id)
        await asyncio.Event().wait()        # done: stays pending with the connection's tasks

    async def _consume(self, conn: _Connection, handle: Handler) -> None:
        taking = asyncio.create_task(self._take(conn, handle))
        pinging = asyncio.create_task(self._keepalive(conn))
        subscribing = asyncio.create_task(self._subscribed(conn))
        closing = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait((taking, pinging, subscribing, closing),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (taking, pinging, subscribing, closing):
                task.cancel()
            for task in (taking, pinging, subscribing):
                with contextlib.suppress(asyncio.CancelledError):
                    await task    # re-raises BrokerError when the connection was lost

    async def _take(self, conn: _Connection, handle: Handler) -> None:
        inbox = conn.inbox
        stall_s = self._settings.stall_flush_ms / 1000
        while self._taking:
            if not inbox and len(conn.acks) and self._on_stall is not None and \
                    not await conn.wait_for_messages(stall_s):
                self.window.stalled(len(conn.acks))
                stalled_at = time.monotonic()
                full = 0 < self.window.size <= len(conn.acks)
                while wait := await self._on_stall(full):
                    if await conn.wait_for_messages(wait):
                        break
                await conn.wait_for_messages()
                acked = conn.acks.flushed_at
                self.window.resumed(time.monotonic() - acked if acked > stalled_at else None)
            await conn.wait_for_messages()
            gathering = self.gathering
            if len(inbox) < TAKE and conn.subscribed and gathering.due(time.monotonic()):
                waiting = len(inbox)
                await conn.gather(gathering.seconds)
                gathering.brought(len(inbox) - waiting, time.monotonic())
            while inbox and self._taking:
                # Left in the inbox once not taking: unacknowledged, delivered again later.
                await handle(_take_some(inbox))
            conn.resume_if_drained()
        await self._closed.wait()

    async def _keepalive(self, conn: _Connection) -> None:
        """A PINGREQ every half keepalive (the broker must hear from us even while acks are
        held back); a broker silent for 1.5 keepalives is taken as gone."""
        keepalive = self._settings.keepalive_s
        while True:
            await asyncio.sleep(keepalive / 2)
            silent = time.monotonic() - conn.last_heard
            if silent > keepalive * 1.5:
                raise BrokerError(f"the broker was silent for {silent:.0f} s")
            conn.write(wire.PINGREQ_PACKET)
