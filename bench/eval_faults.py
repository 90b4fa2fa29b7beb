"""The simulator's injected faults, through the collector's own decode, enrich and detect.

Simulates days of a few communities in accelerated time (every device reporting every
``period`` minutes), injects every fault type on a few devices at random times, runs each
message through the same pipeline the collector uses (bytes in, alerts out) and the silent-
device check every simulated minute, then scores the raised alerts against the truth:

- a truth window is caught when an alert of its rule is raised on its device between its
  start and one hour after its end; the delay is from the start to that alert;
- an alert raised where no window of its rule on its device is (with the same hour's grace)
  is a false positive.

Detection runs with the live settings (``DetectSettings()``: the statistical detector on).
Its ``anomaly`` alerts are no fault type's: they are counted apart, with how many came
during an injected fault on their device.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from collector.decode import Decoder
from collector.detect.alerts import Alert, AlertBook
from collector.detect.stage import DetectStage
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import DetectSettings, ValidationSettings
from devices.registry import Registry, from_mapping
from devices.topics import device_topic
from simulators.behaviour import SimDevice
from simulators.faults import TYPES, Injected, plan
from simulators.registry_gen import generate

GRACE_S = 3600.0


@dataclass
class TypeScore:
    windows: int = 0
    caught: int = 0
    false_positives: int = 0
    delays: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.windows if self.windows else 0.0

    @property
    def precision(self) -> float:
        found = self.caught + self.false_positives
        return self.caught / found if found else 0.0


def simulate(registry: Registry, days: float, period_min: float, seed: int,
             per_type: int, settings: DetectSettings | None = None,
             end: float | None = None) -> tuple[list[Injected], list[Alert]]:
    """Simulated days ending at ``end`` (epoch s; default an hour ago)."""
    rng = random.Random(seed)
    end = time.time() - 3600 if end is None else end
    start = end - days * 86_400
    devices = sorted(registry.devices.values(), key=lambda d: d.id)
    injected = plan(devices, list(TYPES.values()), start + 86_400, end, rng, per_type)
    by_device: dict[str, list[Injected]] = defaultdict(list)
    for fault in injected:
        by_device[fault.device].append(fault)
    sims = [SimDevice(d, random.Random(rng.getrandbits(64)), start, by_device[d.id],
                      incidents=False) for d in devices]
    offsets = [rng.uniform(0, period_min * 60) for _ in sims]
    stage = DetectStage(registry, settings or DetectSettings(), AlertBook())
    pipeline = Pipeline(Decoder(ValidationSettings(max_age_days=days + 2), "sc"),
                        Enricher(registry), Counters(), stage)
    alerts: list[Alert] = []
    step = period_min * 60
    now = start
    while now < end:
        for sim, offset in zip(sims, offsets, strict=True):
            alerts.extend(_publish(pipeline, sim, now + offset))
        for minute in range(max(1, int(period_min))):     # each minute, at least each step
            alerts.extend(stage.tick(int((now + minute * 60) * 1000)))
        now += step
    return injected, alerts


def _publish(pipeline: Pipeline, sim: SimDevice, at: float) -> list[Alert]:
    obj, events = sim.step(at)
    d = sim.device
    ms = int(at * 1000)
    out: list[Alert] = []
    messages = [("telemetry", obj)] if obj else []
    messages += [("event", e) for e in events]
    for i, (channel, body) in enumerate(messages):
        body["ts"] = ms + i
        topic = device_topic(d.community.id, d.kind, d.id, channel)  # type: ignore[arg-type]
        done = pipeline.process(Inbound(topic, orjson.dumps(body), ms + i))
        assert not done.rejects, done.rejects
        out.extend(done.alerts)
    return out


def score(injected: list[Injected], alerts: list[Alert]) -> dict[str, TypeScore]:
    scores = {name: TypeScore() for name in TYPES}
    raised = [a for a in alerts if a.state == "raised" and a.rule in TYPES]
    windows: dict[tuple[str, str], list[Injected]] = defaultdict(list)
    for fault in injected:
        windows[(fault.device, fault.type)].append(fault)
        scores[fault.type].windows += 1
        first = min((a.ts_ms / 1000 for a in raised if a.device == fault.device
                     and a.rule == fault.type
                     and fault.start_s <= a.ts_ms / 1000 <= fault.end_s + GRACE_S),
                    default=None)
        if first is not None:
            scores[fault.type].caught += 1
            scores[fault.type].delays.append(first - fault.start_s)
    for alert in raised:
        at = alert.ts_ms / 1000
        explained = [f for f in injected if f.device == alert.device
                     and (f.type == alert.rule or alert.rule in TYPES[f.type].implies)]
        if not any(f.start_s <= at <= f.end_s + GRACE_S for f in explained):
            scores[alert.rule].false_positives += 1
    return scores


def statistical(injected: list[Injected], alerts: list[Alert]) -> tuple[int, int]:
    """The statistical alerts raised, and how many of them during an injected fault (any
    type, with the hour's grace) on their device."""
    raised = [a for a in alerts if a.state == "raised" and a.rule.startswith("anomaly")]
    during = sum(any(f.device == a.device and f.start_s <= a.ts_ms / 1000 <= f.end_s + GRACE_S
                     for f in injected) for a in raised)
    return len(raised), during


def run(communities: int = 2, days: float = 12, period_min: float = 10, seed: int = 7,
        per_type: int = 5) -> tuple[dict[str, TypeScore], tuple[int, int]]:
    registry = from_mapping(generate(communities, seed=seed))
    injected, alerts = simulate(registry, days, period_min, seed, per_type)
    return score(injected, alerts), statistical(injected, alerts)


def report(scores: dict[str, TypeScore]) -> list[str]:
    lines = [f"{'fault type':<26} {'windows':>7} {'caught':>6} {'FP':>4} {'precision':>9} "
             f"{'recall':>6} {'median delay':>12}"]
    for name, s in scores.items():
        delay = f"{statistics.median(s.delays) / 60:.0f} min" if s.delays else "-"
        lines.append(f"{name:<26} {s.windows:>7} {s.caught:>6} {s.false_positives:>4} "
                     f"{s.precision:>9.2f} {s.recall:>6.2f} {delay:>12}")
    return lines


if __name__ == "__main__":
    scores, (raised, during) = run()
    for line in report(scores):
        print(line)
    print(f"statistical (anomaly) alerts with the live settings: {raised} raised, {during} of "
          "them during an injected fault on their device")
