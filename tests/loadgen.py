"""A test publisher that survives broker restarts: one paho client with a persistent
session, publishing readings with unique timestamps so every one can be found again.

Reading ``i`` has ``ts = base_ms + i``: unique for every device, so InfluxDB's count of
points between ``base_ms`` and ``base_ms + count`` is the number of distinct readings
that landed, and a reading written twice cannot hide (it overwrites itself).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import yaml

# Kinds whose readings are easy to make valid with one field.
FIELD = {"streetlight": "dim_pct", "waste_bin": "fill_pct", "door": "battery_pct",
         "smoke": "battery_pct", "camera": "storage_pct", "water_meter": "flow_m3h"}


@dataclass
class Load:
    """Publishes ``count`` readings at about ``rate`` a second, ``per_message`` a message."""

    port: int
    registry: Path
    count: int
    rate: float
    per_message: int = 1
    client_id: str = "sct-test-load"
    with_ts: bool = True  # False: no ts, a seq instead; the collector stamps them
    base_ms: int = field(default_factory=lambda: int(time.time() * 1000) - 3_600_000)
    per_kind: dict[str, int] = field(default_factory=dict)
    kinds: tuple[str, ...] = tuple(FIELD)  # the kinds of device that publish
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        data = yaml.safe_load(self.registry.read_text())
        self.devices = [(d["community"], d["kind"], d["id"]) for d in data["devices"]
                        if d["kind"] in FIELD and d["kind"] in self.kinds]
        self.published = 0
        self.messages = 0
        self.acknowledged = 0  # PUBACKs; paho resends unacknowledged messages on reconnect
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   clean_session=False)
        self._client.max_inflight_messages_set(1000)
        self._client.reconnect_delay_set(0.2, 2)
        self._client.on_publish = self._on_publish
        self._client.connect("127.0.0.1", self.port)
        self._client.loop_start()
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        messages = (self.count + self.per_message - 1) // self.per_message
        for m in range(messages):
            community, kind, device = self.devices[m % len(self.devices)]
            first = m * self.per_message
            n = min(self.per_message, self.count - first)
            stamp = "ts" if self.with_ts else "seq"
            base = self.base_ms if self.with_ts else 0
            objects = [{stamp: base + first + j, FIELD[kind]: float((first + j) % 90)}
                       for j in range(n)]
            if kind == "water_meter":   # a cumulative counter: it only goes up
                for j, obj in enumerate(objects):
                    obj["total_m3"] = float(first + j)
            payload = orjson.dumps(objects[0] if self.per_message == 1 else objects)
            topic = f"sc/{community}/{kind}/{device}/telemetry"
            # While the broker is away paho keeps the message and sends it after reconnecting.
            self._client.publish(topic, payload, qos=1)
            self.messages += 1
            self.per_kind[kind] = self.per_kind.get(kind, 0) + n
            self.published += n
            ahead = self.published / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def _on_publish(self, *_args: object) -> None:
        self.acknowledged += 1  # paho calls back from its one network thread

    def wait_acknowledged(self, timeout: float) -> None:
        """Until the broker acknowledged every message (paho resends across reconnects)."""
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acknowledged >= self.messages:
                self._client.loop_stop()
                self._client.disconnect()
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.messages - self.acknowledged} messages never "
                             "acknowledged by the broker")
