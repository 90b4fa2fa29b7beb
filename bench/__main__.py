"""The end-to-end benchmark, in one run against one Mosquitto and one InfluxDB:

1. backlog drain, single readings and arrays of 50 of a lit streetlight's eight fields:
   the collector alone (into a discarding endpoint) against ``mosquitto_sub``, and the
   collector into InfluxDB against InfluxDB's own ingest of the same points
   (``bench/drain.py``);
2. live load at QoS 1: single lit-streetlight readings at half the collector's own
   end-to-end drain rate and at half InfluxDB's ceiling, and arrays of 50 at half
   InfluxDB's ceiling for arrays: the rate that lands (and its ratio to that ceiling),
   publish-to-queryable latency p50 / p99, collector CPU µs per reading
   (``bench/live.py``);
3. live load of the simulator's mixed fleet (20 communities, every kind, 1,500 messages/s for
   30 s, as ``sct demo`` sends them): collector CPU µs per message (``bench/fleet.py``).

Prints tables (rates, ratios to the ceiling, CPU per process in cores, the collector's
peak RSS) and writes every figure to a JSON file. The machine is shared: read the ratios.

    python -m bench [--readings 200000] [--live-seconds 10] [--out bench.json] [--profile DIR]

To measure another version of the collector with this benchmark (before / after a change),
set ``BENCH_COLLECTOR_PATH`` to a checkout of it (``git worktree add /tmp/before <commit>``):
only the collector child processes import from there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import drain, fleet, live
from bench.readings import lamps
from bench.stack import Collector, collector_env, forget_session, running_servers


def live_runs(work: Path, mq: Any, influx: Any, registry: dict[str, Any],
              loads: list[tuple[str, float, int, float]], seconds: float
              ) -> list[dict[str, Any]]:
    """Each load: its label, readings/s, readings a message, and the InfluxDB ceiling its
    ratio is read against."""
    devices = lamps(registry)
    out: list[dict[str, Any]] = []
    for label, readings_s, per_message, ceiling in loads:
        env = collector_env(work, mq, influx, f"live-{len(out)}")
        collector = Collector(env, work)
        collector.start()
        try:
            result = live.run(collector, mq.port, f"http://127.0.0.1:{influx.port}",
                              env["SCT_INFLUX__DATABASE"], devices,
                              live.LiveLoad(readings_s / per_message, seconds, per_message),
                              {"mosquitto": mq.process.pid, "influxd": influx.process.pid})
        finally:
            usage = collector.stop()
            forget_session(mq.port, env["SCT_MQTT__CLIENT_ID"])
        out.append({"bench": "live", "load": label, "per_message": per_message,
                    "offered_readings_s": readings_s, "influx_ceiling_points_s": ceiling,
                    **result, "collector_peak_rss_mb": round(usage.peak_rss_mb)})
    return out


def print_live(results: list[dict[str, Any]]) -> None:
    print(f"\n{'live, QoS 1, readings/s':<40}{'offered':>9}{'landed':>9}{'ratio':>7}"
          f"{'p50 s':>7}{'p99 s':>7}{'lost':>6}{'µs/rd':>7}  CPU (cores)")
    for r in results:
        cpu = " ".join(f"{k}={v:.2f}" for k, v in r["cpu"].items())
        print(f"{r['load']:<40}{r['offered_readings_s']:>9,.0f}{r['landed_readings_s']:>9,.0f}"
              f"{r['landed_readings_s'] / r['influx_ceiling_points_s']:>7.2f}"
              f"{r['latency_p50_s']:>7.2f}"
              f"{r['latency_p99_s']:>7.2f}{r['readings'] - r['landed']:>6}"
              f"{r['cpu_us_per_reading']:>7.1f}  {cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--profile", type=Path, help="profile the drains with py-spy (folder)")
    args = parser.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sct-bench-") as tmp, \
            running_servers(Path(tmp)) as (mq, influx, registry):
        work = Path(tmp)
        drains = drain.run(work, mq, influx, registry, args.readings, args.profile)
        single, arrays = (drains[0]["influx_ceiling"]["points_s"],
                          drains[1]["influx_ceiling"]["points_s"])
        own = drains[0]["end_to_end"]["msg_s"]
        # Single readings at half the collector's own rate and at half InfluxDB's ceiling;
        # arrays of 50 (gateways' flushes) at half InfluxDB's ceiling for arrays.
        lives = live_runs(work, mq, influx, registry,
                          [("single, half the collector's drain rate", own / 2, 1, single),
                           ("single, half InfluxDB's ceiling", single / 2, 1, single),
                           ("arrays of 50, half InfluxDB's ceiling", arrays / 2, 50, arrays)],
                          args.live_seconds)
        mixed = fleet.run(work, mq, influx, 20, 1500.0, 30.0)
    drain.print_table(drains)
    print_live(lives)
    fleet.print_result(mixed)
    args.out.write_text(json.dumps({"drain": drains, "live": lives, "fleet": mixed}, indent=2))
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
