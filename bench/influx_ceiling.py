"""InfluxDB's own ingest ceiling: the very points a drain writes, encoded beforehand, posted
as the collector posts them (its batch size, as many writers as its batcher has), with
nothing else in the way. A drain into InfluxDB is read against this, measured in the same run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from bench.stack import CpuWatch
from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import ValidationSettings
from devices.registry import from_mapping

#: The collector's batcher posts with two writer tasks (``collector.sink.batcher``).
WRITERS = 2


def encoded(registry: dict[str, Any], messages: list[tuple[str, bytes]]) -> list[bytes]:
    """The lines the collector writes for ``messages`` (its own decode, enrich, encode)."""
    reg = from_mapping(registry)
    pipeline = Pipeline(Decoder(ValidationSettings(max_age_days=30), "sc"), Enricher(reg),
                        Counters(), None)
    now = int(time.time() * 1000)
    return [line for topic, payload in messages
            for line in pipeline.process(Inbound(topic, payload, now)).lines]


def run(influx_url: str, database: str, lines: list[bytes], batch_size: int,
        influxd_pid: int) -> dict[str, Any]:
    """Post ``lines`` in batches of ``batch_size`` from ``WRITERS`` threads: points/s."""
    httpx.post(f"{influx_url}/query",
               data={"q": f'CREATE DATABASE "{database}"'}).raise_for_status()
    bodies = iter([b"\n".join(lines[i:i + batch_size])
                   for i in range(0, len(lines), batch_size)])
    lock = threading.Lock()
    failures: list[str] = []

    def writer() -> None:
        with httpx.Client(base_url=influx_url, timeout=60) as client:
            while True:
                with lock:
                    body = next(bodies, None)
                if body is None:
                    return
                response = client.post("/write", params={"db": database, "precision": "ms"},
                                       content=body)
                if response.status_code != 204:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    watch = CpuWatch({"influxd": influxd_pid})
    started = time.monotonic()
    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if failures:
        raise SystemExit(f"InfluxDB refused pre-encoded points: {failures[0]}")
    return {"points": len(lines), "seconds": round(seconds, 2),
            "points_s": len(lines) / seconds, "cpu": watch.stop()}
