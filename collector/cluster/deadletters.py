"""The cluster's dead letters: the ``<prefix>.deadletters`` stream, replicated like the queues.

Two kinds of record arrive there:

- a refusal, appended by a collector (confirmed before the message is acknowledged): the
  same JSON record as the one-machine dead letters (:func:`collector.deadletter.to_json`);
- a poison message, dead-lettered by the broker after ``amqp.delivery_limit`` deliveries
  without an acknowledgement (a message that crashes or stalls every collector): the
  device's own bytes, with RabbitMQ's ``x-death`` header; listed with reason ``poison``.

A stream is read without being consumed, so ``sct deadletter list`` can be run any time.
``replay`` publishes the records' payloads again to ``amq.topic`` under their topics (the
way devices publish), so they go through a partition and a collector again; it then appends
a marker naming the offsets it replayed, and listing leaves those out. Lines InfluxDB
refused (topic ``influx:write``) are not device messages and are not replayed.
"""

from __future__ import annotations

import logging

import aio_pika
import orjson

from collector.cluster.broker import Connection, StreamRecord, read_stream
from collector.cluster.topology import MQTT_EXCHANGE, Names
from collector.deadletter import INFLUX_TOPIC, from_json
from collector.records import Reject

log = logging.getLogger(__name__)

MARKER = "replayed"
DELIVERIES = "amqp.delivery_limit"


def _record(message: StreamRecord) -> Reject | list[int] | None:
    headers = message.headers
    if headers.get("kind") == MARKER:
        return [int(offset) for offset in orjson.loads(message.body)]
    # Dead-lettered by the broker: at-least-once dead-lettering sets x-first-death-*
    # (x-death is the at-most-once form); the routing key is the device's topic.
    reason = headers.get("x-first-death-reason")
    queue = headers.get("x-first-death-queue")
    if reason is None and isinstance(headers.get("x-death"), list) and headers["x-death"]:
        death = headers["x-death"][0]
        reason, queue = death.get("reason"), death.get("queue")
    if reason is not None:
        return Reject(message.routing_key.replace(".", "/"), message.body, "poison",
                      f"dead-lettered by the broker ({reason}: {DELIVERIES} deliveries "
                      f"without an acknowledgement) from {queue}", message.timestamp_ms)
    try:
        return from_json(message.body)
    except ValueError:
        log.warning("an unreadable record in the dead-letter stream was skipped")
        return None


async def records(connection: Connection, names: Names,
                  reason: str | None = None) -> list[tuple[int, Reject]]:
    """The dead letters not yet replayed, with their stream offsets, oldest first."""
    found: list[tuple[int, Reject]] = []
    replayed: set[int] = set()
    for message in await read_stream(connection, names.deadletters):
        record = _record(message)
        if isinstance(record, list):
            replayed.update(record)
        elif record is not None and (reason is None or record.reason == reason):
            found.append((message.offset, record))
    return [(offset, r) for offset, r in found if offset not in replayed]


async def replay(connection: Connection, names: Names,
                 reason: str | None = None) -> tuple[int, int]:
    """Publish the dead letters again; (replayed, left as they are)."""
    chosen = await records(connection, names, reason)
    channel = await connection.channel(publisher_confirms=True)
    done: list[int] = []
    skipped = 0
    try:
        exchange = await channel.get_exchange(MQTT_EXCHANGE, ensure=False)
        for offset, reject in chosen:
            if reject.topic == INFLUX_TOPIC or not reject.topic:
                skipped += 1
                continue
            await exchange.publish(aio_pika.Message(reject.payload, delivery_mode=2),
                                   routing_key=reject.topic.replace("/", "."))
            done.append(offset)
        if done:
            stream = await channel.get_exchange(names.deadletters, ensure=False)
            await stream.publish(aio_pika.Message(orjson.dumps(done), delivery_mode=2,
                                                  headers={"kind": MARKER}), routing_key="")
    finally:
        await channel.close()
    return len(done), skipped
