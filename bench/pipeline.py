"""CPU per reading of the synchronous middle (decode, enrich, detect, encode) on one core,
without any I/O: where the collector's time goes, stage by stage.

Messages are those the simulators send: every kind of device of 5 communities, one reading a
message and arrays of 50, a minute apart per device. Best of five, in CPU time (the machine
is shared).

    python -m bench.pipeline        (part of ``make bench``)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import orjson

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


def run(make: Callable[[], Pipeline], batch: list[Inbound]) -> tuple[float, int]:
    """Best µs per reading of five passes, and readings accepted per pass."""
    best, accepted = float("inf"), 0
    for _ in range(5):
        pipeline = make()
        started = time.process_time()   # CPU time: less noise from the other tenants
        lines = 0
        for msg in batch:
            lines += len(pipeline.process(msg).lines)
        best = min(best, time.process_time() - started)
        accepted = lines
    return best / max(accepted, 1) * 1e6, accepted


def main() -> None:
    registry = from_mapping(generate(5, seed=1))
    print(f"{'pipeline, µs per reading':<28}{'decode+enrich':>14}{'+detect':>10}{'readings/s':>12}")
    for label, per_message in (("single readings", 1), ("arrays of 50", 50)):
        batch = messages(registry, per_message)

        def make(detect: bool) -> Pipeline:
            stage = DetectStage(registry, DetectSettings(), AlertBook()) if detect else None
            return Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(registry),
                            Counters(), stage)
        bare, n = run(lambda: make(False), batch)
        full, _ = run(lambda: make(True), batch)
        print(f"{label:<28}{bare:>14.1f}{full:>10.1f}{1e6 / full:>12,.0f}   ({n:,} readings)")


if __name__ == "__main__":
    main()
