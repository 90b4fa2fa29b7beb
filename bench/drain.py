"""Backlog drain: the collector against the broker's own ceiling, in one run.

For each payload shape, N readings are queued in Mosquitto for a persistent QoS 1 session
whose client is away, then the client starts and the time to take them all is measured:
- the ceiling: ``mosquitto_sub`` (C) draining its session, output thrown away;
- the collector: ``sct collect`` (detectors on, as shipped) draining its session until
  InfluxDB counts every reading; its start-up (registry, connection) is reported apart.
Both drain the same broker on the same machine within a minute of each other, so the ratio
is what to read (the machine is shared and its speed drifts).

    python -m bench.drain [--readings 200000] [--out bench-drain.json] [--profile DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from bench.stack import (
    Collector,
    CpuWatch,
    Publisher,
    collector_env,
    running_servers,
    top_of_profile,
    wait_count,
)
from simulators import servers

TOPIC = "sc/+/+/+/telemetry"
SHAPES = (("single readings", 1), ("arrays of 50", 50))


def queue(port: int, bins: list[dict[str, str]], count: int, per_message: int,
          base_ms: int) -> int:
    """``count`` waste-bin readings, ``per_message`` a message (ts = base_ms + i, unique),
    published at QoS 1 until the broker acknowledged all; the number of messages."""
    publisher = Publisher(port, "bench-queue")
    packets: list[bytes] = []
    for first in range(0, count, per_message):
        bin_ = bins[len(packets) % len(bins)]
        readings = [{"ts": base_ms + i, "fill_pct": float(i % 90)}
                    for i in range(first, min(first + per_message, count))]
        packets.append(publisher.packet(
            f"sc/{bin_['community']}/waste_bin/{bin_['id']}/telemetry",
            orjson.dumps(readings[0] if per_message == 1 else readings)))
    for at in range(0, len(packets), 1000):
        publisher.send(packets[at:at + 1000])
    publisher.wait_acked(len(packets))
    publisher.close()
    return len(packets)


def ceiling(port: int, broker_pid: int, load: Any) -> dict[str, float]:
    """mosquitto_sub draining what ``load()`` queues for its session: msg/s and CPU."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i",
            "bench-ceiling", "-t", TOPIC]
    subprocess.run([*base, "-W", "1"], capture_output=True, timeout=30)   # make the session
    messages = load()
    watch = CpuWatch({"mosquitto": broker_pid})
    started = time.monotonic()
    process = subprocess.Popen([*base, "-C", str(messages)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"mosquitto_sub failed ({process.returncode})")
    return {"msg_s": messages / seconds, "seconds": seconds,
            "cpu": {"mosquitto_sub": round((usage.ru_utime + usage.ru_stime) / seconds, 3),
                    **watch.stop()}}


def collector_drain(collector: Collector, influx_url: str, database: str, count: int,
                    base_ms: int, load: Any, pids: dict[str, int]) -> dict[str, Any]:
    collector.start()                      # its persistent session now exists
    collector.stop()
    messages = load()
    collector.start()
    watch = CpuWatch({"collector": collector.pid, **pids})
    query = f"SELECT count(fill_pct) FROM waste_bin WHERE time >= {base_ms}ms"
    done, landed = wait_count(influx_url, database, query, count)
    cpu = watch.stop()
    usage = collector.stop()
    draining = done - collector.started - collector.ready_s
    return {"messages": messages, "landed": landed, "ready_s": round(collector.ready_s, 2),
            "seconds": round(draining, 2), "msg_s": messages / draining,
            "readings_s": count / draining, "cpu": cpu, "peak_rss_mb": round(usage.peak_rss_mb)}


def run(work: Path, mq: servers.Server, influx: servers.Server, registry: dict[str, Any],
        readings: int, profile: Path | None) -> list[dict[str, Any]]:
    """Both shapes; ``registry`` is the one written to ``work/registry.yaml``."""
    bins = [d for d in registry["devices"] if d["kind"] == "waste_bin"]
    influx_url = f"http://127.0.0.1:{influx.port}"
    servers_pids = {"mosquitto": mq.process.pid, "influxd": influx.process.pid}
    results = []
    for shape, per_message in SHAPES:
        env = collector_env(work, mq, influx, f"drain-{per_message}")
        database = env["SCT_INFLUX__DATABASE"]
        base = int(time.time() * 1000) - 7 * 86_400_000
        top = ceiling(mq.port, mq.process.pid,
                      partial(queue, mq.port, bins, readings, per_message, base))
        raw = profile / f"drain-{per_message}.txt" if profile else None
        collector = Collector(env, work, raw)
        col = collector_drain(
            collector, influx_url, database, readings, base + 10 * readings,
            partial(queue, mq.port, bins, readings, per_message, base + 10 * readings),
            servers_pids)
        results.append({"bench": "drain", "shape": shape, "readings": readings,
                        "ceiling": top, "collector": col,
                        "ratio": round(col["msg_s"] / top["msg_s"], 3),
                        "profile_top": top_of_profile(raw) if raw else None})
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'backlog drain':<18}{'ceiling msg/s':>14}{'sct msg/s':>11}{'readings/s':>12}"
          f"{'ratio':>7}{'start s':>8}{'peak RSS':>9}  CPU (cores)")
    for r in results:
        col = r["collector"]
        cpu = " ".join(f"{k}={v:.2f}" for k, v in col["cpu"].items())
        print(f"{r['shape']:<18}{r['ceiling']['msg_s']:>14,.0f}{col['msg_s']:>11,.0f}"
              f"{col['readings_s']:>12,.0f}{r['ratio']:>7.2f}{col['ready_s']:>8.1f}"
              f"{col['peak_rss_mb']:>6} MB  {cpu}")
        for name, share in r["profile_top"] or []:
            print(f"    {share:5.1f} %  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path("bench-drain.json"))
    parser.add_argument("--profile", type=Path, help="run the collector under py-spy; "
                        "raw profiles go to this folder and their top entries are printed")
    args = parser.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sct-bench-") as tmp, \
            running_servers(Path(tmp)) as (mq, influx, registry):
        results = run(Path(tmp), mq, influx, registry, args.readings, args.profile)
    print_table(results)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
