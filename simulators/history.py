"""``sct simulate --since DURATION``: the readings of the past, as fast as the broker takes them.

Before going live, every device replays its behaviour from ``since`` ago up to now, one
reading every ``period_s`` (its own phase within it), and publishes what it "buffered" the
way a gateway flushes after an outage: JSON arrays of up to ``per_message`` readings (and
its events alongside), at QoS 1. Faults planned for that span show up in the history too,
so dashboards and alerts have days to show the moment they open.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from simulators.publisher import Published, _Fleet


async def backfill(fleet: _Fleet, published: Published, since_s: float, period_s: float,
                   per_message: int, limit: float) -> int:
    """Publish the history; the number of readings published (at most ``limit``)."""
    now = time.time()
    start = now - since_s
    phase = [random.Random(i).uniform(0, period_s) for i in range(len(fleet.devices))]
    for sim in fleet.devices:
        sim.last_s = start
    readings: list[list[dict[str, object]]] = [[] for _ in fleet.devices]
    events: list[list[dict[str, object]]] = [[] for _ in fleet.devices]
    gate = asyncio.Semaphore(500)
    tasks: set[asyncio.Task[None]] = set()
    count = 0
    t = start
    while t < now and count < limit and not fleet.stop.is_set():
        for i, sim in enumerate(fleet.devices):
            at = t + phase[i]
            if at >= now or count >= limit:
                continue
            obj, happened = sim.step(at)
            if obj:
                obj["ts"] = fleet.stamp(i, at)
                readings[i].append(obj)
                count += 1
            for event in happened:
                event["ts"] = fleet.stamp(i, at)
                events[i].append(event)
            if len(readings[i]) >= per_message:
                await _flush(fleet, published, i, readings, events, gate, tasks)
        t += period_s
    for i in range(len(fleet.devices)):
        await _flush(fleet, published, i, readings, events, gate, tasks)
    if tasks:
        await asyncio.gather(*tasks)
    return count


async def _flush(fleet: _Fleet, published: Published, i: int,
                 readings: list[list[dict[str, object]]], events: list[list[dict[str, object]]],
                 gate: asyncio.Semaphore, tasks: set[asyncio.Task[None]]) -> None:
    batch, happened = readings[i], events[i]
    if not batch and not happened:
        return
    readings[i], events[i] = [], []
    await gate.acquire()
    task = asyncio.create_task(_send(fleet, published, i, batch, happened))
    task.add_done_callback(lambda _t: gate.release())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _send(fleet: _Fleet, published: Published, i: int,
                batch: list[dict[str, object]], happened: list[dict[str, object]]) -> None:
    sim, client = fleet.devices[i], fleet.clients[i]
    kind = sim.device.kind
    if batch:
        await client.publish(fleet.topic(sim.device, "telemetry"), orjson.dumps(batch), qos=1)
        published.readings[kind] += len(batch)
    if happened:
        await client.publish(fleet.topic(sim.device, "event"), orjson.dumps(happened), qos=1)
        published.events[kind] += len(happened)
