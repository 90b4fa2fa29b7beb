"""Servers and a collector of one test, each restartable, for tests that kill or restart them."""

from __future__ import annotations

from pathlib import Path

from conftest import Stack, start_stack
from loadgen import Load

from simulators import servers


def landed(stack: Stack, load: Load) -> int:
    """Distinct readings of ``load`` in ``stack``'s InfluxDB (each has its own ts)."""
    return points(stack, load, f"time >= {load.base_ms}ms AND time < "
                               f"{load.base_ms + load.count}ms")


def points(stack: Stack, load: Load, where: str) -> int:
    """Points of ``load``'s kinds matching ``where`` (0 before the database exists)."""
    series = stack.query(f"SELECT count(*) FROM /.*/ WHERE {where}", missing_ok=True)
    return sum(max(v for v in s["values"][0][1:] if v is not None) for s in series
               if s["name"] in load.per_kind)


class Rig:
    """Servers and a collector of one test, each restartable on its own port and data."""

    def __init__(self, root: Path, max_inflight: int = 0, **settings: str) -> None:
        self.root = root
        self.max_inflight = max_inflight
        for name in ("broker", "influx", "stack"):
            (root / name).mkdir(parents=True)
        self.broker = servers.start_mosquitto(root / "broker", max_inflight=max_inflight)
        self.influx = servers.start_influxd(root / "influx")
        self.stack: Stack = start_stack(root / "stack", self.broker, self.influx,
                                        "smart_community", communities=2,
                                        client_id="sct-faults", **settings)

    def restart_broker(self) -> None:
        self.broker = servers.start_mosquitto(self.root / "broker", port=self.broker.port,
                                              max_inflight=self.max_inflight)

    def restart_influx(self) -> None:
        self.influx = servers.start_influxd(self.root / "influx", port=self.influx.port)

    def landed(self, load: Load) -> int:
        """Distinct readings of ``load`` in InfluxDB."""
        return landed(self.stack, load)

    def points(self, load: Load, where: str) -> int:
        """Points of ``load``'s kinds matching ``where`` (0 before the database exists)."""
        return points(self.stack, load, where)

    def stop(self) -> None:
        if self.stack.collector.poll() is None:
            self.stack.collector.kill()
            self.stack.collector.wait()
        self.broker.stop()
        self.influx.stop()


