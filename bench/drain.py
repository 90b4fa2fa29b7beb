"""Backlog drain, the collector against the broker's own ceiling, in one run (issue 7, part 1).

For each payload shape, N readings are queued in Mosquitto for a persistent QoS 1 session
whose client is away, then the client starts and the time to take them all is measured:
- the ceiling: ``mosquitto_sub`` (C) draining its session, output thrown away;
- the collector: ``sct collect`` draining its session until InfluxDB counts every reading.
Both drain the same broker on the same machine within a minute of each other, so the ratio
is what to read (the machine is shared and its speed drifts). Prints a table and writes
the figures as JSON.

    python -m bench.drain [--readings 100000] [--out bench-drain.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import paho.mqtt.client as paho

from simulators import servers
from simulators.registry_gen import generate, to_yaml

TOPIC = "sc/+/+/+/telemetry"
TIMEOUT_S = 600   # every stage is bounded


def publish(port: int, bins: list[dict[str, str]], count: int, per_message: int,
            base_ms: int) -> int:
    """``count`` waste-bin readings, ``per_message`` a message (ts = base_ms + i, unique),
    QoS 1, until the broker acknowledged all; the number of messages."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    messages = 0
    for first in range(0, count, per_message):
        bin_ = bins[messages % len(bins)]
        readings = [{"ts": base_ms + i, "fill_pct": float(i % 90)}
                    for i in range(first, min(first + per_message, count))]
        client.publish(f"sc/{bin_['community']}/waste_bin/{bin_['id']}/telemetry",
                       orjson.dumps(readings[0] if per_message == 1 else readings), qos=1)
        messages += 1
    deadline = time.monotonic() + TIMEOUT_S
    while acked[0] < messages and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return messages


def ceiling(port: int, messages: int, queue: Callable[[], object]) -> float:
    """Seconds for mosquitto_sub to drain ``messages`` queued by ``queue()``."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i",
            "bench-ceiling", "-t", TOPIC]
    subprocess.run([*base, "-W", "1"], capture_output=True, timeout=30)   # make the session
    queue()
    started = time.monotonic()
    subprocess.run([*base, "-C", str(messages)], stdout=subprocess.DEVNULL, check=True,
                   timeout=TIMEOUT_S)
    return time.monotonic() - started


def _proc(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = next(int(line.split()[1]) * 1024 for line in
                Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM"))
    return cpu, peak


def collector_drain(env: dict[str, str], work: Path, influx_url: str, database: str,
                    count: int, base_ms: int, queue: Callable[[], object]) -> dict[str, float]:
    def start() -> subprocess.Popen[bytes]:
        # A fresh log each time: "subscribed to" from an earlier run would pass the wait
        # below before this collector had made its session (its backlog then went nowhere).
        log = (work / "collector.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "collector", "collect"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        before = time.monotonic()
        while "subscribed to" not in (work / "collector.log").read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() - before > 60:
                raise SystemExit("the collector did not start: see " + str(work))
            time.sleep(0.05)
        return process

    first = start()                      # its persistent session now exists
    first.send_signal(signal.SIGTERM)
    first.wait(60)
    queue()
    started = time.monotonic()
    process = start()
    q = f"SELECT count(fill_pct) FROM waste_bin WHERE time >= {base_ms}ms"
    landed = 0
    while landed < count and time.monotonic() - started < TIMEOUT_S:
        try:
            series = servers.influx_query(influx_url, database, q)
        except servers.ServerError:   # no database until the collector's first write
            series = []
        landed = series[0]["values"][0][1] if series else 0
        if landed < count:
            time.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu, peak = _proc(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    return {"seconds": elapsed, "landed": landed, "cpu_s": cpu, "peak_rss_mb": peak / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-drain.json"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="sct-bench-") as tmp:
        work = Path(tmp)
        (work / "mq").mkdir()
        (work / "influx").mkdir()
        mq = servers.start_mosquitto(work / "mq")
        influx = servers.start_influxd(work / "influx")
        try:
            registry = generate(2, seed=1)
            (work / "registry.yaml").write_text(to_yaml(registry))
            bins = [d for d in registry["devices"] if d["kind"] == "waste_bin"]
            influx_url = f"http://127.0.0.1:{influx.port}"
            for shape, per_message in (("single readings, QoS 1", 1),
                                       ("arrays of 50, QoS 1", 50)):
                database = f"bench{per_message}"
                env = dict(os.environ, SCT_MQTT__URL=f"mqtt://127.0.0.1:{mq.port}",
                           SCT_MQTT__CLIENT_ID=f"bench-{per_message}",
                           SCT_INFLUX__URL=influx_url, SCT_INFLUX__DATABASE=database,
                           SCT_REGISTRY__PATH=str(work / "registry.yaml"),
                           SCT_STORAGE__DIR=str(work / f"var{per_message}"))
                base = int(time.time() * 1000) - 7 * 86_400_000
                n = args.readings
                messages = (n + per_message - 1) // per_message
                sub_s = ceiling(mq.port, messages,
                                partial(publish, mq.port, bins, n, per_message, base))
                col = collector_drain(env, work, influx_url, database, n, base + 10 * n,
                                      partial(publish, mq.port, bins, n, per_message,
                                              base + 10 * n))
                results.append({
                    "shape": shape, "readings": n, "messages": messages,
                    "ceiling_msg_s": messages / sub_s,
                    "collector_msg_s": messages / col["seconds"],
                    "collector_readings_s": n / col["seconds"],
                    "ratio": sub_s / col["seconds"], **{f"collector_{k}": v
                                                        for k, v in col.items()}})
        finally:
            mq.stop()
            influx.stop()
    print(f"{'shape':<24}{'ceiling msg/s':>14}{'collector msg/s':>16}{'readings/s':>12}"
          f"{'ratio':>7}{'CPU s':>7}{'peak RSS':>10}")
    for r in results:
        print(f"{r['shape']:<24}{r['ceiling_msg_s']:>14,.0f}{r['collector_msg_s']:>16,.0f}"
              f"{r['collector_readings_s']:>12,.0f}{r['ratio']:>7.2f}"
              f"{r['collector_cpu_s']:>7.1f}{r['collector_peak_rss_mb']:>8.0f} MB")
    args.out.write_text(json.dumps(results, indent=2))
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
