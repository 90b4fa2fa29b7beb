"""Backlog drain: the collector against the two ceilings that bound it, in one run.

For each message shape (single readings, arrays of 50), N readings as devices send them (a
lit streetlight's eight fields, raising no alert: ``bench/readings.py``) are queued in
Mosquitto for a persistent QoS 1 session whose client is away, then the client starts and
the time to take them all is measured. Four drains of the same readings, within minutes:

- the broker's ceiling: ``mosquitto_sub`` (C) draining its session, output thrown away;
- (a) the collector alone: ``sct collect`` (detection and acknowledgements on, as shipped)
  writing to an endpoint that answers as InfluxDB and throws the writes away
  (``bench/discard.py``), until it has been sent every reading; read against the first;
- (b) end to end: ``sct collect`` into InfluxDB until InfluxDB counts every reading;
- InfluxDB's ceiling: the same points, encoded beforehand, posted with the collector's batch
  size and number of writers (``bench/influx_ceiling.py``); (b) is read against it.

The collector's CPU per reading (µs) is from its CPU time over the drain. The machine is
shared and its speed drifts: read the ratios, measured in the same run.

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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import influx_ceiling
from bench.discard import DiscardInflux
from bench.readings import KIND, lamps, messages_of, readings
from bench.stack import (
    TIMEOUT_S,
    Collector,
    CpuWatch,
    LandedInflux,
    Publisher,
    collector_env,
    forget_session,
    running_servers,
    top_of_profile,
)
from simulators import servers

TOPIC = "sc/+/+/+/telemetry"
CEILING_CLIENT = "bench-ceiling"
SHAPES = (("single readings", 1), ("arrays of 50", 50))


def queue(port: int, messages: list[tuple[str, bytes]]) -> int:
    """Publish ``messages`` at QoS 1 until the broker acknowledged all; how many."""
    publisher = Publisher(port, "bench-queue")
    packets = [publisher.packet(topic, payload) for topic, payload in messages]
    for at in range(0, len(packets), 1000):
        publisher.send(packets[at:at + 1000])
    publisher.wait_acked(len(packets))
    publisher.close()
    return len(packets)


def ceiling(port: int, broker_pid: int, load: Any) -> dict[str, float]:
    """mosquitto_sub draining what ``load()`` queues for its session: msg/s and CPU. The
    session is ended afterwards (``forget_session``)."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i",
            CEILING_CLIENT, "-t", TOPIC]
    subprocess.run([*base, "-E"], capture_output=True, timeout=30, check=True)   # the session
    messages = load()
    watch = CpuWatch({"mosquitto": broker_pid})
    started = time.monotonic()
    process = subprocess.Popen([*base, "-C", str(messages)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    forget_session(port, CEILING_CLIENT)
    if process.returncode != 0:
        raise SystemExit(f"mosquitto_sub failed ({process.returncode})")
    return {"msg_s": messages / seconds, "seconds": seconds,
            "cpu": {"mosquitto_sub": round((usage.ru_utime + usage.ru_stime) / seconds, 3),
                    **watch.stop()}}


def collector_drain(port: int, collector: Collector, count: int, landed: Callable[[], int],
                    load: Any, pids: dict[str, int]) -> dict[str, Any]:
    """Start the collector once (its persistent session), queue ``load()`` while it is away,
    start it again and time it until ``landed()`` reaches ``count``."""
    collector.start()                      # its persistent session now exists
    collector.stop()
    messages = load()
    collector.start(ready="connected to")   # the backlog follows at once
    watch = CpuWatch({"collector": collector.pid, **pids})
    deadline = time.monotonic() + TIMEOUT_S
    got = landed()
    while got < count and time.monotonic() < deadline:
        time.sleep(0.02)
        got = landed()
    done = time.monotonic()
    cpu = watch.stop()
    if got < count and isinstance(landed, LandedInflux):
        got = landed.total()        # timed out: how many did land
    usage = collector.stop()
    forget_session(port, collector.env["SCT_MQTT__CLIENT_ID"])
    draining = done - collector.started - collector.ready_s
    return {"messages": messages, "landed": got, "ready_s": round(collector.ready_s, 2),
            "seconds": round(draining, 2), "msg_s": messages / draining,
            "readings_s": count / draining, "cpu": cpu,
            "cpu_us_per_reading": round(cpu["collector"] * draining / count * 1e6, 1),
            "peak_rss_mb": round(usage.peak_rss_mb)}


def run(work: Path, mq: servers.Server, influx: servers.Server, registry: dict[str, Any],
        count: int, profile: Path | None) -> list[dict[str, Any]]:
    """Both shapes; ``registry`` is the one written to ``work/registry.yaml``."""
    devices = lamps(registry)
    influx_url = f"http://127.0.0.1:{influx.port}"
    pids = {"mosquitto": mq.process.pid, "influxd": influx.process.pid}
    results = []
    discard = DiscardInflux()
    try:
        for shape, per_message in SHAPES:
            # Each drain of a shape has its own range of ts (base + k * count, k = 0..3), the
            # second shape's after the first's: no point overwrites another.
            base = int(time.time() * 1000) - 7 * 86_400_000 + (per_message > 1) * 4 * count

            def load(offset: int, per: int = per_message, first: int = base) -> Any:
                return partial(queue, mq.port, messages_of(
                    readings(count, first + offset * count), devices, per))

            top = ceiling(mq.port, mq.process.pid, load(0))
            raw = profile / f"drain-{per_message}.txt" if profile else None
            # (a) the collector alone, into the discarding endpoint.
            env = collector_env(work, mq, influx, f"alone-{per_message}",
                                SCT_INFLUX__URL=discard.url)
            before = discard.lines(KIND)
            alone = collector_drain(mq.port, Collector(env, work, raw), count,
                                    lambda b=before: discard.lines(KIND) - b, load(1), pids)
            # (b) end to end, into InfluxDB.
            env = collector_env(work, mq, influx, f"drain-{per_message}")
            database = env["SCT_INFLUX__DATABASE"]
            full = collector_drain(mq.port, Collector(env, work), count,
                                   LandedInflux(influx_url, database, base + 2 * count, count),
                                   load(2), pids)
            # InfluxDB's own ceiling for the same points.
            lines = influx_ceiling.encoded(registry, messages_of(
                readings(count, base + 3 * count), devices, per_message))
            ingest = influx_ceiling.run(influx_url, f"ceiling_{per_message}", lines,
                                        int(env.get("SCT_INFLUX__BATCH_SIZE", 5000)),
                                        influx.process.pid)
            results.append({
                "bench": "drain", "shape": shape, "readings": count, "kind": KIND,
                "mosquitto_sub": top, "alone": alone, "end_to_end": full,
                "influx_ceiling": ingest,
                "ratio_alone": round(alone["msg_s"] / top["msg_s"], 3),
                "ratio_end_to_end": round(full["readings_s"] / ingest["points_s"], 3),
                "profile_top": top_of_profile(raw) if raw else None})
    finally:
        discard.close()
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'backlog drain':<16}{'ceiling':>9}{'(a) alone':>10}{'ratio':>6}{'µs/rd':>7}"
          f"{'InfluxDB':>10}{'(b) e2e':>9}{'ratio':>6}{'µs/rd':>7}{'peak RSS':>9}"
          "  readings/s; CPU (cores) in (b)")
    for r in results:
        alone, full = r["alone"], r["end_to_end"]
        cpu = " ".join(f"{k}={v:.2f}" for k, v in full["cpu"].items())
        per = r["readings"] / r["alone"]["messages"]
        print(f"{r['shape']:<16}{r['mosquitto_sub']['msg_s'] * per:>9,.0f}"
              f"{alone['readings_s']:>10,.0f}{r['ratio_alone']:>6.2f}"
              f"{alone['cpu_us_per_reading']:>7.1f}{r['influx_ceiling']['points_s']:>10,.0f}"
              f"{full['readings_s']:>9,.0f}{r['ratio_end_to_end']:>6.2f}"
              f"{full['cpu_us_per_reading']:>7.1f}{full['peak_rss_mb']:>6} MB  {cpu}")
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
