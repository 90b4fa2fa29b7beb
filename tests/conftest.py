"""Shared fixtures. Integration fixtures start the real Mosquitto and InfluxDB.

A missing server binary is an error, never a skip: ``make test`` installs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from devices.registry import from_mapping
from devices.schema import DEFAULT_DATABASE
from simulators import servers
from simulators.registry_gen import generate, to_yaml

#: Two communities and four devices, for tests of decode and enrich.
SMALL_REGISTRY = from_mapping({
    "communities": [
        {"id": "c1", "city": "baoding", "district": "lianchi", "households": 900},
        {"id": "c2", "city": "xinji", "district": "xinji", "households": 500},
    ],
    "devices": [
        {"id": "lamp-1", "kind": "streetlight", "community": "c1", "lat": 38.87,
         "lon": 115.46},
        {"id": "bin-1", "kind": "waste_bin", "community": "c1", "attrs": {"category": "other"}},
        {"id": "door-1", "kind": "door", "community": "c1"},
        {"id": "door-2", "kind": "door", "community": "c2"},
        {"id": "meter-1", "kind": "water_meter", "community": "c2", "attrs": {"role": "inlet"}},
    ],
})


class Claim:
    """A message's claim that counts its holds (it starts with the handler's one)."""

    def __init__(self) -> None:
        self.holds = 1

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        self.holds -= 1


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             every: float = 0.1) -> object:
    """Poll ``condition`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def publish(port: int, messages: list[tuple[str, bytes]], client_id: str = "") -> None:
    """Publish at QoS 1 as a device would, and wait for every PUBACK."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"dev-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = servers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = servers.start_influxd(tmp_path_factory.mktemp("influxdb"))
    yield server
    server.stop()


@dataclass
class Stack:
    """A running collector against the session's servers, with its files."""

    workdir: Path
    registry: Path
    env: dict[str, str]
    mqtt_port: int
    influx_url: str
    database: str
    collector: subprocess.Popen[bytes]

    def query(self, q: str, missing_ok: bool = False) -> list[dict]:
        """The series of ``q``; with ``missing_ok``, none before the database exists."""
        try:
            return servers.influx_query(self.influx_url, self.database, q)
        except servers.ServerError as exc:
            if missing_ok and "database not found" in str(exc):
                return []
            raise

    def sct(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def log(self) -> str:
        return (self.workdir / "collector.log").read_text(errors="replace")

    def start_collector(self) -> None:
        """Start (or start again) the collector with the same configuration and files."""
        before = self.log().count("subscribed to") if (self.workdir / "collector.log").exists() \
            else 0
        log = (self.workdir / "collector.log").open("ab")
        self.collector = subprocess.Popen([sys.executable, "-m", "collector", "collect"],
                                          env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.log().count("subscribed to") > before
                 or self.collector.poll() is not None, 30, "the collector to subscribe")
        assert self.collector.poll() is None, self.log()[-3000:]

    def stop_collector(self) -> None:
        """SIGTERM (flush and exit 0), or SIGKILL when it does not stop in 30 s."""
        if self.collector.poll() is None:
            self.collector.terminate()
            try:
                self.collector.wait(30)
            except subprocess.TimeoutExpired:
                self.collector.kill()
                self.collector.wait()

    def latest_metrics(self) -> dict:
        """The collector's latest self-metrics point ({} before the first).

        InfluxDB 1.x keeps each field of a point apart, and a point read while its write is
        being applied can come back with some fields null (seen once in CI: ``accepted``
        None; influxdb-python issue 397): such a read is repeated until every counter a
        metrics point always carries is there."""
        point: dict = {}
        for _ in range(50):
            series = self.query("SELECT * FROM collector ORDER BY time DESC LIMIT 1")
            if not series:
                return {}
            point = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
            if all(point.get(name) is not None for name in METRICS_COUNTERS):
                return point
            time.sleep(0.1)
        return point


#: Fields every ``collector`` point carries (collector/metrics.py, ``Counters.point``).
METRICS_COUNTERS = ("received", "redelivered", "accepted", "rejected", "alerts", "written",
                    "batches", "write_retries", "write_rejected", "pending", "spooled",
                    "replayed")


def start_stack(workdir: Path, mosquitto: servers.Server, influxdb: servers.Server,
                database: str, communities: int = 20, client_id: str = "sct-test",
                registry_data: dict | None = None, **settings: str) -> Stack:
    registry = workdir / "registry.yaml"
    registry.write_text(to_yaml(registry_data or generate(communities, seed=7)),
                        encoding="utf-8")
    env = {**os.environ,
           "SCT_MQTT__URL": f"mqtt://127.0.0.1:{mosquitto.port}",
           "SCT_MQTT__CLIENT_ID": client_id,
           "SCT_INFLUX__URL": f"http://127.0.0.1:{influxdb.port}",
           "SCT_INFLUX__DATABASE": database,
           "SCT_INFLUX__FLUSH_INTERVAL_S": "0.2",
           "SCT_REGISTRY__PATH": str(registry),
           "SCT_STORAGE__DIR": str(workdir / "var"),
           "SCT_METRICS__INTERVAL_S": "1", **settings}
    stack = Stack(workdir, registry, env, mosquitto.port, f"http://127.0.0.1:{influxdb.port}",
                  database, None)  # type: ignore[arg-type]
    stack.start_collector()
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mosquitto: servers.Server,
          influxdb: servers.Server) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("stack"), mosquitto, influxdb,
                          DEFAULT_DATABASE)
    yield running
    if running.collector.poll() is None:
        running.collector.kill()
        running.collector.wait()


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three RabbitMQ nodes in one cluster, shared by the whole session (a node takes
    10-50 s to start here); the test that kills a node runs last."""
    from simulators.rabbitmq import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("rabbit-cluster"))
    yield cluster
    cluster.stop()
