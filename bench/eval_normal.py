"""Statistical alerts on a normal simulated fleet: how many per 100 device-days, per model.

Issue 14's budget: at most one statistical alert per device per 100 days on normal data.
The simulator's water devices (meters, quality probes, tank levels: the kinds the
statistical detectors watch) of a few communities report every minute (``--period``
seconds) for ``days`` simulated days, with no faults injected, through the collector's own
decode, enrich and detect; every raised ``anomaly*`` alert is a false one. The alerts are
counted over the whole run, warm-ups included (their days count as device-days, though a
device's first day is its warm-up).

    python -m bench.eval_normal [--days 2] [--communities 4] [--period 60] [--models t2,surprise]
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

#: The local hours the simulated days start at.
START_HOURS = (0, 8, 16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--communities", type=int, default=4)
    parser.add_argument("--period", type=float, default=60.0,
                        help="seconds between a device's readings (below 30: fast devices)")
    parser.add_argument("--models", default="surprise,t2")
    args = parser.parse_args(argv)
    data = generate(args.communities, seed=11)
    data["devices"] = [d for d in data["devices"] if d["kind"] in WATCHED]
    registry = from_mapping(data)
    device_days = len(registry.devices) * args.days
    print(f"{len(registry.devices)} water devices, {args.days:g} days, a reading every "
          f"{args.period:g} s, no faults")
    # The warm-up starts at the hour the simulated days start, and water follows the day:
    # three starting hours (China Standard Time), each over the same simulated days.
    midnight_cst = (time.time() // 86_400 - 2) * 86_400 - 8 * 3600
    for model in args.models.split(","):
        started = time.monotonic()
        settings = DetectSettings(statistical=True, statistical_model=model)
        counts = []
        for hour in START_HOURS:
            end = midnight_cst + hour * 3600
            _, alerts = simulate(registry, args.days, args.period / 60, seed=11, per_type=0,
                                 settings=settings, end=end)
            counts.append(sum(a.state == "raised" and a.rule.startswith("anomaly")
                              for a in alerts))
        rates = ", ".join(f"{100 * n / device_days:.2f}" for n in counts)
        print(f"{model:<9} {sum(counts):>6} statistical alerts in {len(counts)} runs = "
              f"{100 * sum(counts) / (device_days * len(counts)):8.2f} per 100 device-days "
              f"(runs starting at {', '.join(f'{h:02d}:00' for h in START_HOURS)}: {rates}; "
              f"{time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
