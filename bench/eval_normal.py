"""Statistical alerts on a normal simulated fleet: how many per 100 device-days, per model.

Issue 14's budget: at most one statistical alert per device per 100 days on normal data.
The simulator's water devices (meters, quality probes, tank levels: the kinds the
statistical detectors watch) of a few communities report every minute for ``days``
simulated days, with no faults injected, through the collector's own decode, enrich and
detect; every raised ``anomaly*`` alert is a false one.

    python -m bench.eval_normal [--days 2] [--communities 4]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.eval_faults import simulate
from collector.detect.stage import WATCHED
from collector.settings import DetectSettings
from devices.registry import from_mapping
from simulators.registry_gen import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--communities", type=int, default=4)
    args = parser.parse_args(argv)
    data = generate(args.communities, seed=11)
    data["devices"] = [d for d in data["devices"] if d["kind"] in WATCHED]
    registry = from_mapping(data)
    device_days = len(registry.devices) * args.days
    print(f"{len(registry.devices)} water devices, {args.days:g} days, a reading a minute, "
          "no faults")
    for model in ("surprise", "t2"):
        started = time.monotonic()
        settings = DetectSettings(statistical=True, statistical_model=model)
        _, alerts = simulate(registry, args.days, 1, seed=11, per_type=0, settings=settings)
        raised = [a for a in alerts if a.state == "raised" and a.rule.startswith("anomaly")]
        print(f"{model:<9} {len(raised):>6} statistical alerts = "
              f"{100 * len(raised) / device_days:8.2f} per 100 device-days "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
