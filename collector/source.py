"""Source: the MQTT subscription. The only module that imports aiomqtt.

QoS 1, a persistent session (fixed client id, clean session off) so the broker keeps what
arrives while the collector is away, and reconnection with capped, jittered exponential
backoff. Each message becomes an :class:`Inbound` and is handed to the pipeline.

Backpressure: aiomqtt's own bounded queue *discards* messages when full. Instead the queue
is left unbounded and the socket stops being read once ``max_pending_messages`` are
waiting; the broker then holds the rest. That needs three private attributes of aiomqtt 2.x
(``_client``, ``_loop``, ``_queue``), which is why aiomqtt is pinned below 3.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from collector.records import Inbound
from collector.settings import MqttSettings

log = logging.getLogger(__name__)

Handler = Callable[[Inbound], Awaitable[None]]


class _PausingClient(aiomqtt.Client):
    """An aiomqtt client that stops reading its socket instead of dropping messages."""

    def __init__(self, *args: Any, high_water: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._high_water = high_water
        self._fd: int | None = None
        self._paused = False

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        self._fd = sock.fileno()
        self._paused = False

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, message)
        if not self._paused and self._fd is not None and \
                self._queue.qsize() >= self._high_water:
            self._loop.remove_reader(self._fd)
            self._paused = True

    def resume_if_drained(self) -> None:
        """Read the socket again once the queue is down to half the high-water mark."""
        if self._paused and self._fd is not None and \
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


class MqttSource:
    """Subscribes to the device topics and feeds every message to a handler, forever."""

    def __init__(self, settings: MqttSettings, filters: list[str]) -> None:
        self._settings = settings
        self._filters = filters
        self.connected = asyncio.Event()
        self.connections = 0

    async def run(self, handle: Handler) -> None:
        """Receive until cancelled; reconnect with backoff whenever the broker goes away."""
        delay = self._settings.reconnect_min_s
        while True:
            try:
                await self._session(handle)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                pause = delay * random.uniform(0.5, 1.0)
                log.warning("MQTT connection to %s lost or refused (%s); retrying in %.1f s",
                            self._settings.url, exc, pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, self._settings.reconnect_max_s)
            else:
                delay = self._settings.reconnect_min_s

    async def _session(self, handle: Handler) -> None:
        s = self._settings
        password = s.password.get_secret_value() if s.password else None
        async with _PausingClient(
            s.host, s.port, identifier=s.client_id, clean_session=False,
            username=s.username, password=password, keepalive=s.keepalive_s,
            high_water=s.max_pending_messages,
        ) as client:
            for topic_filter in self._filters:
                await client.subscribe(topic_filter, qos=1)
            self.connections += 1
            self.connected.set()
            log.info("subscribed to %s on %s as %s", ", ".join(self._filters), s.url,
                     s.client_id)
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, str):
                    payload = payload.encode()
                elif not isinstance(payload, bytes | bytearray):
                    payload = str(payload).encode()
                await handle(Inbound(message.topic.value, bytes(payload),
                                     int(time.time() * 1000)))
                client.resume_if_drained()
