"""Live load: readings published at a steady rate while the collector runs; the rate it
lands, and publish-to-queryable latency.

The load publisher sends QoS 1 messages in 10 ms slices for a bounded time; among them, every
50 ms, a probe reading stamped with its send time. A poller asks InfluxDB for new probe
readings every 20 ms: a probe's latency is when it was first seen minus its stamp (the
poll adds up to ~20 ms plus the query's own time). At the end every load reading is counted
in InfluxDB (nothing lost), with a bounded wait.

Run by ``python -m bench`` at fractions of the ceiling measured in the same run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bench.readings import KIND, lit_streetlight
from bench.stack import Collector, CpuWatch, Publisher, wait_count
from simulators import servers

SLICE_S = 0.01
PROBE_EVERY_S = 0.05
POLL_S = 0.02


@dataclass
class LiveLoad:
    """What to publish: ``rate`` messages/s of ``per_message`` readings for ``seconds``."""

    rate: float
    seconds: float
    per_message: int = 1


def _topic(device: dict[str, str]) -> str:
    return f"sc/{device['community']}/{KIND}/{device['id']}/telemetry"


def _packets(publisher: Publisher, lamps: list[dict[str, str]], load: LiveLoad,
             base_ms: int) -> list[bytes]:
    # Built before the clock starts: building them as they go would slow the publisher.
    out = []
    total = int(load.rate * load.seconds)
    for i in range(total):
        first = i * load.per_message
        readings = [lit_streetlight(k, base_ms + k)
                    for k in range(first, first + load.per_message)]
        out.append(publisher.packet(_topic(lamps[i % len(lamps)]), orjson.dumps(
            readings[0] if load.per_message == 1 else readings)))
    return out


class ProbeWatch(threading.Thread):
    """Polls InfluxDB for probe readings; ``latencies_s`` of those seen."""

    def __init__(self, influx_url: str, database: str, device: str) -> None:
        super().__init__(daemon=True)
        self._url, self._db, self._device = influx_url, database, device
        self.latencies_s: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0
        while not self.stop.is_set():
            query = (f"SELECT power_w FROM {KIND} WHERE device = '{self._device}' "
                     f"AND time > {last}ms")
            try:
                series = servers.influx_query(self._url, self._db, query)
            except (servers.ServerError, OSError):
                series = []
            now_ms = time.time() * 1000
            for ts, _ in series[0]["values"] if series else []:
                self.latencies_s.append((now_ms - ts) / 1000)
                last = max(last, ts)
            time.sleep(POLL_S)


def run(collector: Collector, port: int, influx_url: str, database: str,
        lamps: list[dict[str, str]], load: LiveLoad, pids: dict[str, int]) -> dict[str, Any]:
    """Publish ``load`` (lit-streetlight readings) to a running collector; rates, latency
    and CPU."""
    probe, targets = lamps[0], lamps[1:]
    publisher = Publisher(port, f"bench-live-{database}")
    base_ms = int(time.time() * 1000) - 3_600_000
    packets = _packets(publisher, targets, load, base_ms)
    watch = ProbeWatch(influx_url, database, probe["id"])
    watch.start()
    probe_topic = _topic(probe)
    cpu = CpuWatch({"collector": collector.pid, **pids})
    per_slice = load.rate * SLICE_S
    started = time.monotonic()
    sent, next_probe, probes = 0, started, 0
    while sent < len(packets):
        now = time.monotonic()
        due = min(len(packets), int((now - started) / SLICE_S * per_slice) + 1)
        batch = packets[sent:due]
        if now >= next_probe:
            # A reading like the others (its values vary: a repeated one would raise
            # value_stuck on the probe's lamp).
            batch.append(publisher.packet(probe_topic, orjson.dumps(
                lit_streetlight(probes, int(time.time() * 1000)))))
            probes += 1
            next_probe += PROBE_EVERY_S
        if batch:
            publisher.send(batch)
            sent = due
        time.sleep(max(0.0, SLICE_S - (time.monotonic() - now)))
    published_s = time.monotonic() - started
    publisher.wait_acked(len(packets) + probes)
    readings = len(packets) * load.per_message
    query = f"SELECT count(power_w) FROM {KIND} WHERE time >= {base_ms}ms " \
            f"AND time < {base_ms + readings}ms"
    done, landed = wait_count(influx_url, database, query, readings)
    shares = cpu.stop()
    time.sleep(0.2)
    watch.stop.set()
    watch.join(5)
    publisher.close()
    lat = np.array(watch.latencies_s) if watch.latencies_s else np.array([np.nan])
    return {"offered_msg_s": load.rate, "published_msg_s": len(packets) / published_s,
            "landed_readings_s": readings / (done - started), "readings": readings,
            "landed": landed, "probes": probes, "probes_seen": len(watch.latencies_s),
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p99_s": float(np.percentile(lat, 99)),
            "latency_max_s": float(np.max(lat)), "cpu": shares,
            "cpu_us_per_reading": round(shares["collector"] * (done - started) / readings
                                        * 1e6, 1)}
