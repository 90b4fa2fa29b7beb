"""The cluster's topology: what ``sct cluster setup`` declares and a collector checks.

    device --MQTT--> amq.topic --<root>.*.*.*.telemetry|event|status--> <prefix>.devices
                        |   (the MQTT plugin's exchange; "/" becomes ".")    (topic exchange)
                        |                              <root>.<community>.*.*.<channel>  |
     alerts: <root>.<community>.alert.<kind>.<device>     (one community, one partition) v
     go back to operators' MQTT clients only        <prefix>.partition.<n>: quorum queues,
                                                    single active consumer, delivery limit
       no binding takes it --> alternate exchange --> <prefix>.unrouted (quorum queue)
       delivery limit reached, refusals ----------> <prefix>.deadletters (stream)
       stamps given to readings without ts -------> <prefix>.stamps.<n> (a stream each)
       statistical detectors' state --------------> <prefix>.state.<n> (a stream each)

Device channels alone enter ``<prefix>.devices`` (the exchange-to-exchange bindings carry
nothing else), so the collectors' alerts on ``amq.topic`` never route back into a partition,
and the alternate exchange (set on ``<prefix>.devices`` when it is declared: ``amq.topic``
itself could only get one through a policy) catches exactly the device messages that no
community binding takes: RabbitMQ acknowledges an unroutable QoS 1 publish to the device
and drops it otherwise.

A community's partition is a stable hash of its id (CRC-32) modulo the partition count,
which is fixed once chosen: the ``<prefix>.topology`` stream records it and every community
bound, one record for each run of ``setup`` that added something.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika import ExchangeType
from aiormq.exceptions import ChannelNotFoundEntity

from collector.cluster.broker import FAILURES, Connection, read_stream
from collector.errors import ConfigError
from collector.settings import AmqpSettings
from devices.topics import CHANNELS

log = logging.getLogger(__name__)

MQTT_EXCHANGE = "amq.topic"


def partition_of(community: str, partitions: int) -> int:
    """The partition of a community: the same on every machine and in every run."""
    return zlib.crc32(community.encode()) % partitions


@dataclass(frozen=True)
class Names:
    """The names of everything the topology holds."""

    prefix: str

    @property
    def devices(self) -> str:
        return f"{self.prefix}.devices"

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}.unrouted"

    @property
    def deadletters(self) -> str:
        return f"{self.prefix}.deadletters"

    @property
    def topology(self) -> str:
        return f"{self.prefix}.topology"

    def stamps(self, n: int) -> str:
        """The stamp stream of partition ``n`` (one a partition: a take-over reads only its
        own partition's)."""
        return f"{self.prefix}.stamps.{n}"

    def state(self, n: int) -> str:
        """The statistical detectors' state stream of partition ``n``."""
        return f"{self.prefix}.state.{n}"

    def partition(self, n: int) -> str:
        return f"{self.prefix}.partition.{n}"


@dataclass
class Layout:
    """What the topology stream says was set up: the partition count, the topic root and
    each community's partition."""

    partitions: int = 0
    root: str = ""
    communities: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, records: list[bytes]) -> Layout:
        layout = cls()
        for body in records:
            try:
                record = orjson.loads(body)
                layout.partitions = int(record["partitions"])
                layout.root = str(record["root"])
                layout.communities.update({str(c): int(p)
                                           for c, p in record["communities"].items()})
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.warning("an unreadable record in the topology stream was skipped")
        return layout


def queue_arguments(settings: AmqpSettings, names: Names) -> dict[str, dict[str, Any]]:
    """Every queue and stream with its declare arguments."""
    partition = {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": settings.delivery_limit,
        "x-max-length": settings.max_length,
        # A full queue refuses the publish (the device tries again) instead of dropping.
        "x-overflow": "reject-publish",
        "x-dead-letter-exchange": names.deadletters,
        # The broker keeps a poison message until the dead-letter stream confirms it.
        "x-dead-letter-strategy": "at-least-once",
    }
    queues = {names.partition(n): partition for n in range(settings.partitions)}
    queues[names.unrouted] = {"x-queue-type": "quorum"}
    queues[names.deadletters] = {
        "x-queue-type": "stream",
        "x-max-length-bytes": int(settings.deadletter_max_mb * 2**20)}
    queues[names.topology] = {"x-queue-type": "stream"}
    for n in range(settings.partitions):
        queues[names.stamps(n)] = {"x-queue-type": "stream", "x-max-age": "7D"}
        queues[names.state(n)] = {"x-queue-type": "stream", "x-max-age": "1D"}
    return queues


def exchange_arguments(names: Names) -> dict[str, tuple[ExchangeType, dict[str, Any]]]:
    return {names.devices: (ExchangeType.TOPIC, {"alternate-exchange": names.unrouted}),
            names.unrouted: (ExchangeType.FANOUT, {}),
            names.deadletters: (ExchangeType.FANOUT, {})}


async def _exists(connection: Connection, kind: str, name: str) -> bool:
    """Whether an exchange or queue is there (a passive declare, on a throwaway channel:
    the broker closes the channel when it is not)."""
    channel = await connection.channel()
    try:
        if kind == "exchange":
            await channel.declare_exchange(name, passive=True)
        else:
            await channel.declare_queue(name, passive=True)
        return True
    except ChannelNotFoundEntity:
        return False
    finally:
        with contextlib.suppress(*FAILURES):
            await channel.close()


async def read_layout(connection: Connection, names: Names) -> Layout:
    if not await _exists(connection, "queue", names.topology):
        return Layout()
    return Layout.read([record.body for record in
                        await read_stream(connection, names.topology)])


async def setup(connection: Connection, settings: AmqpSettings, root: str,
                communities: list[str]) -> list[str]:
    """Declare the topology, idempotently; what it added, one line each (empty: nothing).

    Raises:
        ConfigError: the partition count or the topic root differ from those set up before.
    """
    names = Names(settings.prefix)
    layout = await read_layout(connection, names)
    if layout.partitions and (layout.partitions, layout.root) != (settings.partitions, root):
        raise ConfigError(
            f"the cluster was set up with {layout.partitions} partitions and topic root "
            f"{layout.root!r}; amqp.partitions is {settings.partitions} and the root {root!r}. "
            "The partition count is fixed once chosen (README, Scaling out)")
    added: list[str] = []
    channel = await connection.channel()
    try:
        for name, (kind, arguments) in exchange_arguments(names).items():
            if not await _exists(connection, "exchange", name):
                added.append(f"exchange {name}")
            await channel.declare_exchange(name, kind, durable=True, arguments=arguments)
        queues = {}
        for name, arguments in queue_arguments(settings, names).items():
            if not await _exists(connection, "queue", name):
                added.append(f"queue {name} ({arguments['x-queue-type']})")
            queues[name] = await channel.declare_queue(name, durable=True, arguments=arguments)
        devices = await channel.get_exchange(names.devices)
        for channel_name in CHANNELS:
            # Binding again what is bound is a no-op: this heals a binding lost by hand.
            await devices.bind(MQTT_EXCHANGE, f"{root}.*.*.*.{channel_name}")
        await queues[names.unrouted].bind(names.unrouted, "")
        await queues[names.deadletters].bind(names.deadletters, "")
        fresh = {c: partition_of(c, settings.partitions)
                 for c in communities if c not in layout.communities}
        for community, n in sorted({**layout.communities, **fresh}.items()):
            for channel_name in CHANNELS:
                await queues[names.partition(n)].bind(
                    names.devices, f"{root}.{community}.*.*.{channel_name}")
        if fresh or not layout.partitions:
            added += [f"community {c} -> partition {n}" for c, n in sorted(fresh.items())]
            record = {"partitions": settings.partitions, "root": root, "communities": fresh,
                      "at_ms": int(time.time() * 1000), "by": socket.gethostname()}
            confirming = await connection.channel(publisher_confirms=True)
            try:
                await confirming.default_exchange.publish(
                    aio_pika.Message(orjson.dumps(record), delivery_mode=2),
                    routing_key=names.topology)
            finally:
                await confirming.close()
    finally:
        with contextlib.suppress(*FAILURES):
            await channel.close()
    return added


async def missing(connection: Connection, settings: AmqpSettings, root: str,
                  communities: list[str]) -> list[str]:
    """What a collector needs and the cluster lacks (empty: ready), one item each."""
    names = Names(settings.prefix)
    lacking = [f"exchange {name}" for name in exchange_arguments(names)
               if not await _exists(connection, "exchange", name)]
    lacking += [f"queue {name}" for name in queue_arguments(settings, names)
                if not await _exists(connection, "queue", name)]
    if f"queue {names.topology}" in lacking:
        return lacking
    layout = await read_layout(connection, names)
    if (layout.partitions, layout.root) != (settings.partitions, root):
        lacking.append(f"the layout: set up with {layout.partitions} partitions and root "
                       f"{layout.root!r}, configured {settings.partitions} and {root!r}")
    unbound = sorted(set(communities) - set(layout.communities))
    if unbound:
        shown = ", ".join(unbound[:5]) + (f" and {len(unbound) - 5} more"
                                           if len(unbound) > 5 else "")
        lacking.append(f"bindings for {len(unbound)} communities of the registry ({shown})")
    return lacking
