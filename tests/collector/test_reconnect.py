"""The collector rides out a broker restart: it reconnects with backoff and carries on."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from conftest import start_stack, wait_for

from simulators import servers

pytestmark = pytest.mark.integration


def publish(port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_broker_restart(tmp_path: Path, influxdb: servers.Server) -> None:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = servers.start_mosquitto(broker_dir)
    stack = start_stack(tmp_path, broker, influxdb, "reconnect", communities=1,
                        client_id="sct-reconnect")
    try:
        registry = yaml.safe_load(stack.registry.read_text())
        lamp = next(d for d in registry["devices"] if d["kind"] == "streetlight")
        topic = f"sc/{lamp['community']}/streetlight/{lamp['id']}/telemetry"
        query = f"SELECT count(dim_pct) FROM streetlight WHERE device = '{lamp['id']}'"

        def landed() -> int:
            series = stack.query(query)
            return int(series[0]["values"][0][1]) if series else 0

        now = int(time.time() * 1000)
        publish(broker.port, topic, orjson.dumps({"ts": now, "dim_pct": 10.0}))
        wait_for(lambda: landed() == 1, 30, "the first reading")

        broker.stop()
        wait_for(lambda: "retrying in" in stack.log(), 30, "the collector to notice")
        broker = servers.start_mosquitto(broker_dir, port=broker.port)
        wait_for(lambda: stack.log().count("subscribed to") >= 2, 60, "a reconnection")
        publish(broker.port, topic, orjson.dumps({"ts": now + 1, "dim_pct": 20.0}))
        wait_for(lambda: landed() == 2, 30, "a reading after the restart")
        assert stack.collector.poll() is None
    finally:
        stack.collector.terminate()
        stack.collector.wait(30)
        broker.stop()
