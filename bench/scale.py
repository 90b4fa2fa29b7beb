"""Scale of state: a registry of a million devices (load time, peak and resident memory),
and the detect stage's memory per device and per watched series.

Each registry load runs in a fresh interpreter so its peak RSS is its own. The million is
written as JSON (which YAML 1.2 also reads; ``devices.registry.load`` takes either); the
YAML form is measured at a tenth of the size, because PyYAML needs minutes and gigabytes
for the whole million.

    python -m bench.scale [--devices 1000000]      (part of ``make bench``)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import yaml

from collector.decode import Decoded
from collector.detect.alerts import AlertBook
from collector.detect.stage import DetectStage
from collector.settings import DetectSettings
from devices.payloads import TELEMETRY_MODELS
from devices.registry import from_mapping
from devices.topics import DeviceTopic
from simulators.registry_gen import generate

DEVICES_PER_COMMUNITY = 150   # about what the generator makes

_LOAD = """
import json, sys, time
t = time.perf_counter()
from devices import registry
r = registry.load(sys.argv[1])
took = time.perf_counter() - t
status = open('/proc/self/status').read()
kb = {l.split(':')[0]: int(l.split()[1]) for l in status.splitlines() if l.startswith('Vm')}
print(json.dumps({'devices': len(r.devices), 'seconds': took,
                  'peak_rss_mb': kb['VmHWM'] / 1024, 'rss_mb': kb['VmRSS'] / 1024}))
"""


def registry_load(path: Path) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True,
                         text=True, timeout=1800, check=True)
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def registries(devices: int, work: Path) -> list[dict[str, Any]]:
    out = []
    big = generate(max(1, devices // DEVICES_PER_COMMUNITY), seed=1)
    (work / "big.json").write_bytes(orjson.dumps(big))
    out.append({"format": "JSON", **registry_load(work / "big.json")})
    del big
    small = generate(max(1, devices // DEVICES_PER_COMMUNITY // 10), seed=1)
    (work / "small.yaml").write_text(yaml.dump(
        small, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), allow_unicode=True,
        sort_keys=False))
    out.append({"format": "YAML (libyaml)", **registry_load(work / "small.yaml")})
    return out


def detector_state(meters: int = 5_000, readings: int = 50) -> dict[str, float]:
    """Bytes of detect-stage state per water meter (rules + 2 watched series)."""
    registry = from_mapping(generate(max(1, meters // 40), seed=2))
    devices = [d for d in registry.devices.values() if d.kind == "water_meter"][:meters]
    model = TELEMETRY_MODELS["water_meter"]
    start = int(time.time() * 1000) - 86_400_000
    tracemalloc.start()
    stage = DetectStage(registry, DetectSettings(), AlertBook())
    before = tracemalloc.get_traced_memory()[0]
    for r in range(readings):
        ts = start + r * 60_000
        for i, d in enumerate(devices):
            body = model.model_validate({"flow_m3h": 5.0 + (i + r) % 7, "pressure_kpa": 350.0,
                                         "total_m3": 100.0 + r, "ts": ts})
            stage.observe(Decoded(DeviceTopic(d.community.id, d.kind, d.id, "telemetry"),
                                  body, ts, None, {}))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"devices": len(devices), "bytes_per_device": used / len(devices),
            "bytes_per_series": used / (2 * len(devices))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench-scale.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sct-scale-") as tmp:
        loads = registries(args.devices, Path(tmp))
    state = detector_state()
    print(f"{'registry load':<16}{'devices':>10}{'seconds':>9}{'peak RSS':>10}{'RSS after':>11}")
    for r in loads:
        print(f"{r['format']:<16}{r['devices']:>10,}{r['seconds']:>9.1f}"
              f"{r['peak_rss_mb']:>7.0f} MB{r['rss_mb']:>8.0f} MB")
    print(f"detect state: {state['bytes_per_device']:,.0f} bytes per water meter "
          f"({state['bytes_per_series']:,.0f} per watched series, rules included), "
          f"{state['devices']:,} meters after 50 readings each")
    args.out.write_text(json.dumps({"registry": loads, "detect_state": state}, indent=2))
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
