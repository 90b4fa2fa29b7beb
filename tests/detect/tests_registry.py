"""A small registry and a feed of readings for detect-stage tests."""

from __future__ import annotations

from collector.decode import Decoded
from collector.detect.stage import DetectStage
from devices.payloads import TELEMETRY_MODELS
from devices.registry import from_mapping
from devices.topics import DeviceTopic

REGISTRY = from_mapping({
    "communities": [{"id": "c1", "city": "xinji", "district": "xinji", "households": 600}],
    "devices": [{"id": "inlet", "kind": "water_meter", "community": "c1",
                 "attrs": {"role": "inlet"}}],
})


def feed(stage: DetectStage, n: int) -> None:
    for i in range(n):
        ts = 1_795_000_000_000 + i * 60_000
        body = TELEMETRY_MODELS["water_meter"].model_validate(
            {"flow_m3h": 10.0 + i % 7, "pressure_kpa": 350.0 + i % 3, "ts": ts})
        stage.observe(Decoded(DeviceTopic("c1", "water_meter", "inlet", "telemetry"), body,
                              ts, None, {}))
