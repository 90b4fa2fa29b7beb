"""CPU per reading of the synchronous middle (decode, enrich, detect, encode) on one core,
without any I/O: where the collector's time goes, stage by stage.

Messages are those the simulators send: every kind of device of 5 communities, one reading a
message and arrays of 50, a minute apart per device, taken one message at a time. Then the
drains' readings (a lit streetlight's eight fields, ``bench/readings.py``) taken as the MQTT
source hands them over, a read chunk at a time through ``Pipeline.process_many`` (64 single
readings, or 4 arrays of 50): how each step of issue 15 was measured. Best of five, in CPU
time (the machine is shared).

    python -m bench.pipeline        (part of ``make bench``)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench.readings import lamps, messages_of, readings
from collector.decode import Decoder
from collector.detect.alerts import AlertBook
from collector.detect.stage import DetectStage
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import DetectSettings, ValidationSettings
from devices.registry import Registry, from_mapping
from simulators.behaviour import SimDevice
from simulators.registry_gen import generate

MESSAGES = 40_000


def messages(registry: Registry, per_message: int) -> list[Inbound]:
    rng = random.Random(3)
    now = int(time.time() * 1000)
    start = now - 86_400_000
    sims = [SimDevice(d, rng, start / 1000, incidents=False)
            for d in sorted(registry.devices.values(), key=lambda d: d.id)]
    out = []
    for i in range(MESSAGES // per_message):
        sim = sims[i % len(sims)]
        device = sim.device
        ts = start + (i // len(sims)) * 60_000 * per_message
        readings = [{"ts": ts + k * 60_000, **sim.step((ts + k * 60_000) / 1000)[0]}
                    for k in range(per_message)]
        topic = f"sc/{device.community.id}/{device.kind}/{device.id}/telemetry"
        out.append(Inbound(topic, orjson.dumps(readings[0] if per_message == 1 else readings),
                           now))
    return out


def lamp_messages(registry: dict[str, Any], per_message: int) -> list[Inbound]:
    """Lit-streetlight readings, the drains' load (built as the drains build it), round the
    registry's lamps."""
    now = int(time.time() * 1000)
    return [Inbound(topic, payload, now) for topic, payload in
            messages_of(readings(MESSAGES, now - 3_600_000), lamps(registry), per_message)]


def run(make: Callable[[], Pipeline], batch: list[Inbound], chunk: int = 0
        ) -> tuple[float, int]:
    """Best µs per reading of five passes, and readings accepted per pass. ``chunk``: that
    many messages a ``process_many`` call (0: one ``process`` call a message)."""
    best, accepted = float("inf"), 0
    for _ in range(5):
        pipeline = make()
        started = time.process_time()   # CPU time: less noise from the other tenants
        lines = 0
        if chunk:
            for at in range(0, len(batch), chunk):
                lines += sum(len(p.lines) for p in pipeline.process_many(batch[at:at + chunk]))
        else:
            for msg in batch:
                lines += len(pipeline.process(msg).lines)
        best = min(best, time.process_time() - started)
        accepted = lines
    return best / max(accepted, 1) * 1e6, accepted


def main() -> None:
    mapping = generate(5, seed=1)
    registry = from_mapping(mapping)

    def make(detect: bool) -> Pipeline:
        stage = DetectStage(registry, DetectSettings(), AlertBook()) if detect else None
        return Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(registry),
                        Counters(), stage)

    print(f"{'pipeline, µs per reading':<36}{'decode+enrich':>14}{'+detect':>10}"
          f"{'readings/s':>12}")
    shapes = [("mixed fleet, single readings", messages(registry, 1), 0),
              ("mixed fleet, arrays of 50", messages(registry, 50), 0),
              ("lit streetlights, single, 64 a call", lamp_messages(mapping, 1), 64),
              ("lit streetlights, arrays, 4 a call", lamp_messages(mapping, 50), 4)]
    for label, batch, chunk in shapes:
        bare, n = run(lambda: make(False), batch, chunk)
        full, _ = run(lambda: make(True), batch, chunk)
        print(f"{label:<36}{bare:>14.1f}{full:>10.1f}{1e6 / full:>12,.0f}   ({n:,} readings)")


if __name__ == "__main__":
    main()
