"""``sct simulate``: every device of a registry publishing over MQTT, like the real ones.

Each device has its own MQTT connection (client id ``sim-<device>``) with its last will
("offline", retained) on its status topic, says "online" (retained) when it connects and
"offline" when the run ends. Readings go out at QoS 1, spread evenly so the whole fleet
publishes ``rate`` readings a second; a reading counts as published once the broker has
acknowledged it (PUBACK). Every run is bounded by ``count`` readings and ``duration`` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import heapq
import logging
import random
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import orjson

from devices.registry import Device, Registry
from devices.topics import device_topic
from simulators.behaviour import SimDevice
from simulators.faults import Injected
from simulators.history import backfill

log = logging.getLogger(__name__)

CONNECT_BATCH = 200  # connections opened at once


@dataclass
class Published:
    """What a run published, per kind, counted on the broker's acknowledgement."""

    readings: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def table(self) -> str:
        kinds = sorted(set(self.readings) | set(self.events))
        rows = [f"{'kind':<14} {'readings':>9} {'events':>7}"]
        rows += [f"{k:<14} {self.readings[k]:>9} {self.events[k]:>7}" for k in kinds]
        rows.append(f"{'total':<14} {sum(self.readings.values()):>9} "
                    f"{sum(self.events.values()):>7}")
        return "\n".join(rows)


@dataclass
class Plan:
    """How much to publish: ``rate`` readings/s until ``count`` readings or ``duration`` s."""

    rate: float
    duration: float
    count: int | None = None
    seed: int = 1
    root: str = "sc"
    faults: list[Injected] = field(default_factory=list)
    since_s: float = 0.0          # history to publish first (``--since``)
    history_period_s: float = 300.0
    history_per_message: int = 12


class _Fleet:
    """The devices, their connections and the schedule that says who publishes next."""

    def __init__(self, registry: Registry, plan: Plan, stop: asyncio.Event) -> None:
        self.plan = plan
        self.stop = stop
        now = time.time()
        rng = random.Random(plan.seed)
        by_device: dict[str, list[Injected]] = {}
        for fault in plan.faults:
            by_device.setdefault(fault.device, []).append(fault)
        self.devices = [SimDevice(d, random.Random(rng.getrandbits(64)), now,
                                  by_device.get(d.id, ()), incidents=not plan.faults)
                        for d in sorted(registry.devices.values(), key=lambda d: d.id)]
        self.clients: list[aiomqtt.Client] = []
        self.last_ts: list[int] = [0] * len(self.devices)
        period = len(self.devices) / plan.rate
        start = time.monotonic()
        self.schedule = [(start + rng.uniform(0, period), i) for i in range(len(self.devices))]
        heapq.heapify(self.schedule)
        self.period = period

    def topic(self, device: Device, channel: str) -> str:
        return device_topic(device.community.id, device.kind, device.id, channel,  # type: ignore[arg-type]
                            self.plan.root)

    def stamp(self, i: int, at_s: float | None = None) -> int:
        """A timestamp for device ``i`` (now, or ``at_s``), strictly after its previous one:
        no reading overwrites another."""
        ts = max(int((time.time() if at_s is None else at_s) * 1000), self.last_ts[i] + 1)
        self.last_ts[i] = ts
        return ts


@dataclass
class Access:
    """How devices log in: each with its own secret (user name = device id), over TLS
    when ``tls`` is given. Empty: anonymous, plain MQTT (a development broker)."""

    secrets: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_sheets(cls, folder: Path, tls: ssl.SSLContext | None = None) -> Access:
        """The installers' sheets (``device,username,password`` CSVs) in ``folder``."""
        out: dict[str, str] = {}
        for sheet in sorted(folder.glob("*.csv")):
            with sheet.open(newline="", encoding="utf-8") as f:
                out.update((row["username"], row["password"]) for row in csv.DictReader(f))
        return cls(out, tls)


async def simulate(registry: Registry, mqtt_url: str, plan: Plan, access: Access | None = None,
                   stop: asyncio.Event | None = None) -> Published:
    """Run the fleet until the plan's count or duration is reached, or ``stop`` is set.

    Returns what the broker acknowledged, per kind.
    """
    fleet = _Fleet(registry, plan, stop or asyncio.Event())
    published = Published()
    async with contextlib.AsyncExitStack() as stack:
        await _connect_all(fleet, mqtt_url, stack, access or Access())
        log.info("%d devices connected; publishing %.0f readings/s", len(fleet.devices),
                 plan.rate)
        try:
            limit = plan.count if plan.count is not None else float("inf")
            done = 0
            if plan.since_s > 0:
                done = await backfill(fleet, published, plan.since_s, plan.history_period_s,
                                      plan.history_per_message, limit)
                log.info("history of %.0f h published: %d readings", plan.since_s / 3600, done)
            await _publish_loop(fleet, published, limit - done)
        finally:
            await _say_offline(fleet)
    return published


async def _connect_all(fleet: _Fleet, mqtt_url: str, stack: contextlib.AsyncExitStack,
                       access: Access) -> None:
    url = urlsplit(mqtt_url)
    missing = [s.device.id for s in fleet.devices if access.secrets
               and s.device.id not in access.secrets]
    if missing:
        raise ValueError(f"no secret for {len(missing)} devices (first: {missing[0]}): "
                         "generate the sheets again for this registry")
    port = url.port or (8883 if access.tls else 1883)
    for first in range(0, len(fleet.devices), CONNECT_BATCH):
        batch = fleet.devices[first:first + CONNECT_BATCH]
        clients = [aiomqtt.Client(
            url.hostname or "127.0.0.1", port, identifier=f"sim-{sim.device.id}",
            username=sim.device.id if access.secrets else None,
            password=access.secrets.get(sim.device.id), tls_context=access.tls,
            clean_session=True, keepalive=60, max_inflight_messages=100,
            will=aiomqtt.Will(fleet.topic(sim.device, "status"), b"offline", qos=1, retain=True),
        ) for sim in batch]
        await asyncio.gather(*(stack.enter_async_context(c) for c in clients))
        fleet.clients.extend(clients)
        await asyncio.gather(*(c.publish(fleet.topic(s.device, "status"), b"online", qos=1,
                                         retain=True) for c, s in zip(clients, batch, strict=True)))


async def _say_offline(fleet: _Fleet) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        await asyncio.gather(*(c.publish(fleet.topic(s.device, "status"), b"offline", qos=1,
                                         retain=True)
                               for c, s in zip(fleet.clients, fleet.devices, strict=False)))


async def _publish_loop(fleet: _Fleet, published: Published, limit: float) -> None:
    plan = fleet.plan
    deadline = time.monotonic() + plan.duration
    in_flight: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(2000)
    scheduled = 0
    while scheduled < limit and time.monotonic() < deadline and not fleet.stop.is_set():
        due, i = fleet.schedule[0]
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(min(wait, 0.05))
            continue
        heapq.heapreplace(fleet.schedule, (due + fleet.period, i))
        await gate.acquire()
        task = asyncio.create_task(_publish_one(fleet, i, published))
        task.add_done_callback(lambda _t: gate.release())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        scheduled += 1
    if in_flight:
        await asyncio.gather(*in_flight)


async def _publish_one(fleet: _Fleet, i: int, published: Published) -> None:
    sim, client = fleet.devices[i], fleet.clients[i]
    obj, events = sim.step(time.time())
    kind = sim.device.kind
    if obj:  # a device made silent by an injected fault says nothing
        obj["ts"] = fleet.stamp(i)
        await client.publish(fleet.topic(sim.device, "telemetry"), orjson.dumps(obj), qos=1)
        published.readings[kind] += 1
    for event in events:
        event["ts"] = fleet.stamp(i)
        await client.publish(fleet.topic(sim.device, "event"), orjson.dumps(event), qos=1)
        published.events[kind] += 1
