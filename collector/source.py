"""Source: the MQTT subscription. The only module that imports aiomqtt and paho.

QoS 1, a persistent session (fixed client id, clean session off) so the broker keeps what
arrives while the collector is away, and reconnection with capped, jittered exponential
backoff. Each message becomes an :class:`Inbound` and is handed to the pipeline with a
:class:`Ticket`.

Acknowledge after durable: paho's manual acknowledgement is on, so the broker gets a
message's PUBACK only when every reading it produced is written to InfluxDB or fsynced to
the spool (each holds the ticket until then). Acknowledgements go out in the order the
messages came in, as MQTT asks. If the collector dies first, the broker delivers the
message again.

Backpressure: aiomqtt's own bounded queue *discards* messages when full. Instead the queue
is left unbounded and the socket stops being read once ``max_pending_messages`` are
waiting; the broker then holds the rest. That needs private attributes of aiomqtt 2.x
(``_client``, ``_loop``, ``_queue``, ``_disconnected``), which is why aiomqtt is pinned
below 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from collector.records import Inbound
from collector.settings import MqttSettings

log = logging.getLogger(__name__)


class Ticket:
    """One received message's acknowledgement; sent once nothing holds it any more.

    It starts with one hold, the handler's, released when the handler is done with it.
    """

    __slots__ = ("_acks", "_holds", "mid", "qos")

    def __init__(self, acks: _AckQueue, mid: int, qos: int) -> None:
        self._acks = acks
        self.mid = mid
        self.qos = qos
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


class _AckQueue:
    """The tickets of one connection, acknowledged strictly in arrival order."""

    def __init__(self, client: paho.Client) -> None:
        self._client = client
        self._tickets: deque[Ticket] = deque()
        self._open = True

    def __len__(self) -> int:
        return len(self._tickets)

    def track(self, mid: int, qos: int) -> Ticket:
        ticket = Ticket(self, mid, qos)
        if qos > 0:
            self._tickets.append(ticket)
        return ticket

    def send_settled(self) -> None:
        while self._tickets and self._tickets[0].settled:
            ticket = self._tickets.popleft()
            if self._open:
                self._client.ack(ticket.mid, ticket.qos)

    def close(self) -> None:
        # Packet ids belong to their connection: after it, the broker redelivers instead.
        self._open = False
        self._tickets.clear()


class _PausingClient(aiomqtt.Client):
    """aiomqtt with manual acks, our own message type, and pausing instead of dropping."""

    def __init__(self, *args: Any, high_water: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(True)
        self.acks = _AckQueue(self._client)
        self._high_water = high_water
        self._fd: int | None = None
        self._paused = False
        self._stopped = False
        # Not before the subscriptions are acknowledged: a persistent session's backlog
        # arrives right after CONNACK, and a paused socket would never read the SUBACK.
        self.may_pause = False

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._fd = sock.fileno()
        self._paused = False

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # The boundary: paho's message becomes ours here, with its ticket.
        inbound = Inbound(message.topic, bytes(message.payload), int(time.time() * 1000),
                          bool(message.dup))
        # aiomqtt's queue is typed for its Message; we hand it our own pair.
        self._queue.put_nowait((inbound, self.acks.track(message.mid, message.qos)))  # type: ignore[arg-type]
        if self.may_pause and not self._paused and self._queue.qsize() >= self._high_water:
            self._pause()

    def _pause(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._paused = True

    def stop_reading(self) -> None:
        """Take nothing more from the broker; acknowledgements still go out."""
        self._stopped = True
        if not self._paused:
            self._pause()

    def resume_if_drained(self) -> None:
        """Read the socket again once the queue is down to half the high-water mark."""
        if self._paused and not self._stopped and self._fd is not None and \
                self._queue.qsize() <= self._high_water // 2:
            self._paused = False
            self._loop.add_reader(self._fd, self._read)

    def _read(self) -> None:
        # The same as aiomqtt's own reader callback: a failed read means the connection
        # is gone, which ends message iteration with an MqttError.
        try:
            self._client.loop_read()
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)


Handler = Callable[[Inbound, Ticket], Awaitable[None]]


class MqttSource:
    """Subscribes to the device topics and feeds every message to a handler.

    ``run`` goes on until :meth:`stop_taking` and then :meth:`close` are called: in between,
    nothing new is taken but acknowledgements of what is being flushed still go out.
    """

    def __init__(self, settings: MqttSettings, filters: list[str]) -> None:
        self._settings = settings
        self._filters = filters
        self._client: _PausingClient | None = None
        self._taking = True
        self._closed = asyncio.Event()

    @property
    def unacknowledged(self) -> int:
        """Messages received on this connection and not yet acknowledged."""
        return len(self._client.acks) if self._client else 0

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 without waiting (alerts); False when not connected now."""
        if self._client is None:
            return False
        info = self._client._client.publish(topic, payload, qos=1)
        return bool(info.rc == paho.MQTT_ERR_SUCCESS)

    def stop_taking(self) -> None:
        self._taking = False
        if self._client is not None:
            self._client.stop_reading()

    def close(self) -> None:
        self._closed.set()

    async def run(self, handle: Handler) -> None:
        """Receive until closed; reconnect with backoff whenever the broker goes away."""
        delay = self._settings.reconnect_min_s
        while self._taking:
            try:
                await self._session(handle)
                delay = self._settings.reconnect_min_s
            except aiomqtt.MqttError as exc:
                pause = delay * random.uniform(0.5, 1.0)
                log.warning("MQTT connection to %s lost or refused (%s); retrying in %.1f s",
                            self._settings.url, exc, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), pause)
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _session(self, handle: Handler) -> None:
        s = self._settings
        password = s.password.get_secret_value() if s.password else None
        client = _PausingClient(
            s.host, s.port, identifier=s.client_id, clean_session=False,
            username=s.username, password=password, keepalive=s.keepalive_s,
            tls_context=s.ssl_context(), high_water=s.max_pending_messages,
        )
        async with client:
            self._client = client
            try:
                for topic_filter in self._filters:
                    await client.subscribe(topic_filter, qos=1)
                client.may_pause = True
                log.info("subscribed to %s on %s as %s", ", ".join(self._filters), s.url,
                         s.client_id)
                await self._consume(client, handle)
            finally:
                client.acks.close()
                self._client = None

    async def _consume(self, client: _PausingClient, handle: Handler) -> None:
        taking = asyncio.create_task(self._take(client, handle))
        closing = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait((taking, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not taking.done():
                taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking  # re-raises MqttError when the connection was lost

    async def _take(self, client: _PausingClient, handle: Handler) -> None:
        async for item in client.messages:
            inbound: Inbound
            ticket: Ticket
            inbound, ticket = item  # type: ignore[misc]  # the pair _on_message put there
            if not self._taking:
                break  # left unacknowledged: the broker delivers it again next time
            await handle(inbound, ticket)
            client.resume_if_drained()
        await self._closed.wait()
