"""Live load of a mixed fleet: the simulator's communities (every kind of device, one reading
or event a message, status messages, as ``sct demo`` sends them) published at a steady rate
while the collector runs; the collector's CPU per message, and that everything landed.

    python -m bench.fleet [--communities 20] [--rate 1500] [--seconds 30]

Part of ``python -m bench``. CPU per message is the collector's CPU time from the start of
the load until InfluxDB holds every reading and event, over the messages it took (readings,
events and the devices' status messages).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.stack import (
    Collector,
    CpuWatch,
    Usage,
    collector_env,
    running_servers,
    top_of_profile,
)
from simulators import servers
from simulators.registry_gen import generate, to_yaml


def _landed(influx_url: str, database: str, since_ms: int) -> int:
    try:
        series = servers.influx_query(influx_url, database, "SELECT count(*) FROM /.*/ "
                                      f"WHERE time >= {since_ms}ms")
    except servers.ServerError:
        return 0
    # Every field is counted; a point's count is its largest field count. Alerts and the
    # collector's own points are not the devices'.
    return sum(max(v for v in s["values"][0][1:] if v is not None) for s in series
               if s["name"] not in ("alert", "collector", "community_kpi", "city_kpi",
                                    "device_status"))


def run(work: Path, mq: servers.Server, influx: servers.Server, communities: int,
        rate: float, seconds: float, profile: Path | None = None,
        **settings: str) -> dict[str, Any]:
    registry = work / "fleet.yaml"
    registry.write_text(to_yaml(generate(communities, seed=5)))
    env = collector_env(work, mq, influx, "fleet", SCT_REGISTRY__PATH=str(registry),
                        **settings)
    influx_url = f"http://127.0.0.1:{influx.port}"
    collector = Collector(env, work, profile)
    collector.start()
    try:
        started_ms = int(time.time() * 1000) - 60_000
        report = work / "fleet-report.json"
        before = Usage.of(collector.pid).cpu_s
        watch = CpuWatch({"collector": collector.pid, "mosquitto": mq.process.pid,
                          "influxd": influx.process.pid})
        t0 = time.monotonic()
        sim = subprocess.run([sys.executable, "-m", "collector", "simulate", "--registry",
                              str(registry), "--rate", str(rate), "--duration", str(seconds),
                              "--report", str(report)], env=env, capture_output=True,
                             text=True, timeout=seconds + 120)
        if sim.returncode != 0:
            raise SystemExit(f"the simulator failed: {sim.stderr[-2000:]}")
        counts = orjson.loads(report.read_bytes())
        published = sum(counts["readings"].values()) + sum(counts["events"].values())
        deadline = time.monotonic() + 120
        landed = _landed(influx_url, env["SCT_INFLUX__DATABASE"], started_ms)
        while landed < published and time.monotonic() < deadline:
            time.sleep(0.2)
            landed = _landed(influx_url, env["SCT_INFLUX__DATABASE"], started_ms)
        wall = time.monotonic() - t0
        cpu_s = Usage.of(collector.pid).cpu_s - before
        shares = watch.stop()
    finally:
        usage = collector.stop()
    # Messages the collector took: the readings and events, and each device's status
    # messages (online when it connects, offline when it leaves), from its closing line.
    received = int(collector.log.read_text().rsplit("stopped: received=", 1)[1].split()[0])
    return {"bench": "fleet", "communities": communities, "offered_per_s": rate,
            "seconds": round(wall, 1), "published": published, "landed": landed,
            "received": received, "cpu": shares,
            "cpu_us_per_message": round(cpu_s / max(received, 1) * 1e6, 1),
            "peak_rss_mb": round(usage.peak_rss_mb)}


def print_result(r: dict[str, Any]) -> None:
    cpu = " ".join(f"{k}={v:.2f}" for k, v in r["cpu"].items())
    print(f"\nlive mixed fleet ({r['communities']} communities, {r['offered_per_s']:,.0f}/s "
          f"offered): {r['published']:,} readings and events published, {r['landed']:,} "
          f"landed; {r['received']:,} messages with the status ones; collector "
          f"{r['cpu_us_per_message']:.1f} µs CPU a message; peak RSS "
          f"{r['peak_rss_mb']} MB; CPU (cores) {cpu}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--communities", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1500.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("bench-fleet.json"))
    parser.add_argument("--profile", type=Path, help="run the collector under py-spy, its "
                        "raw profile to this file, and print its top entries")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sct-bench-") as tmp, \
            running_servers(Path(tmp)) as (mq, influx, _):
        result = run(Path(tmp), mq, influx, args.communities, args.rate, args.seconds,
                     args.profile)
    print_result(result)
    if args.profile:
        for name, share in top_of_profile(args.profile, 25):
            print(f"    {share:5.1f} %  {name}")
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
