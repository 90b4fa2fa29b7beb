"""``sct demo --cluster``: cluster mode on one machine, with a hand-over to watch.

Starts three RabbitMQ nodes in one cluster (Debian's ``rabbitmq-server``), InfluxDB, sets
the topology up (``sct cluster setup``), starts two collectors (``sct-a`` and ``sct-b``,
each active on half the partitions and standing by on the rest) and the simulator
(publishing over MQTT to the second node). Every few seconds it shows each collector's share;
halfway through (or when Enter is pressed) it kills ``sct-a`` with SIGKILL and shows
``sct-b`` taking its partitions over. At the end: what was published and written.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devices.schema import COLLECTOR, DEFAULT_DATABASE
from simulators import servers
from simulators.demo import PROGRESS_EVERY_S, _child, _stop, _subdir
from simulators.rabbitmq import start_cluster
from simulators.registry_gen import generate, to_yaml

INSTANCES = ("sct-a", "sct-b")
PARTITIONS = 8


class ClusterDemo:
    """One cluster demo run; ``run()`` returns the exit code."""

    def __init__(self, communities: int, rate: float, duration: float | None,
                 keep: Path | None, since: str = "1h") -> None:
        self.communities = communities
        self.rate = rate
        self.duration = duration if duration is not None else 120.0
        self.keep = keep
        self.since = since

    def run(self) -> int:
        with contextlib.ExitStack() as stack:
            workdir = self.keep or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="sct-cluster-demo-")))
            workdir.mkdir(parents=True, exist_ok=True)
            print("starting 3 RabbitMQ nodes (20-60 s) and InfluxDB ...", flush=True)
            try:
                cluster = start_cluster(_subdir(workdir, "rabbitmq"))
            except servers.ServerError as exc:
                print(f"sct demo --cluster needs rabbitmq-server: {exc}", file=sys.stderr)
                return 1
            stack.callback(cluster.stop)
            influx = servers.start_influxd(_subdir(workdir, "influxdb"))
            stack.callback(influx.stop)
            influx_url = f"http://127.0.0.1:{influx.port}"
            registry = workdir / "registry.yaml"
            registry.write_text(to_yaml(generate(self.communities, seed=1)),
                                encoding="utf-8")
            env = dict(os.environ, SCT_SOURCE__KIND="amqp",
                       SCT_AMQP__URLS=json.dumps(cluster.amqp_urls),
                       SCT_AMQP__PARTITIONS=str(PARTITIONS),
                       SCT_AMQP__PEERS=json.dumps(INSTANCES),
                       SCT_MQTT__URL=f"mqtt://127.0.0.1:{cluster.nodes[1].mqtt_port}",
                       SCT_INFLUX__URL=influx_url, SCT_REGISTRY__PATH=str(registry),
                       SCT_METRICS__INTERVAL_S=str(PROGRESS_EVERY_S))
            setup = subprocess.run([sys.executable, "-m", "collector", "cluster", "setup"],
                                   env=env, capture_output=True, text=True, timeout=300)
            print(setup.stdout.splitlines()[-1] if setup.stdout else setup.stderr)
            if setup.returncode:
                return 1
            return self._run(workdir, env, influx_url)
        return 1  # unreachable; keeps mypy sure of the return

    def _run(self, workdir: Path, env: dict[str, str], influx_url: str) -> int:
        collectors = {}
        for name in INSTANCES:
            collectors[name] = _child(name, ["collect"], dict(
                env, SCT_METRICS__INSTANCE=name, SCT_STORAGE__DIR=str(workdir / name)),
                workdir)
        simulator = _child("simulator", ["simulate", "--registry", env["SCT_REGISTRY__PATH"],
                                         "--rate", str(self.rate), "--duration",
                                         str(self.duration), "--since", self.since], env,
                           workdir)
        started = time.monotonic()
        killed_at: float | None = None
        print(f"{'t (s)':>6}  " + "  ".join(f"{n + ' msg/s':>12} {'partitions':>10}"
                                            for n in INSTANCES) +
              "   (Enter: kill sct-a now)")
        last: dict[str, dict[str, float]] = {}
        last_at = 0.0
        try:
            while time.monotonic() - started < self.duration and simulator.poll() is None:
                pressed = _enter_pressed(PROGRESS_EVERY_S)
                elapsed = time.monotonic() - started
                if killed_at is None and (pressed or elapsed >= self.duration / 2):
                    collectors["sct-a"].kill()
                    killed_at = elapsed
                    print(f"{elapsed:6.0f}  sct-a killed (SIGKILL): its partitions go to "
                          "sct-b", flush=True)
                now = _by_instance(influx_url)
                span = elapsed - last_at
                print(f"{elapsed:6.0f}  " + "  ".join(
                    f"{'killed':>12} {'-':>10}" if n == "sct-a" and killed_at is not None
                    else f"{_rate(now, last, n, span):12.0f} "
                         f"{now.get(n, {}).get('partitions', 0):10.0f}" for n in INSTANCES),
                      flush=True)
                last, last_at = now or last, elapsed
        except KeyboardInterrupt:
            print("\nCtrl-C: stopping")
        _stop(simulator)
        for process in collectors.values():
            _stop(process)
        self._report(workdir, influx_url, killed_at)
        return 0

    def _report(self, workdir: Path, influx_url: str, killed_at: float | None) -> None:
        print(f"\nsimulator published:\n"
              f"{(workdir / 'simulator.out').read_text(errors='replace').strip()}")
        final = _by_instance(influx_url)
        for name in INSTANCES:
            row = final.get(name, {})
            print(f"{name}: received {row.get('received', 0):.0f}, written "
                  f"{row.get('written', 0):.0f} lines, redelivered "
                  f"{row.get('redelivered', 0):.0f}")
        takeover = [line for line in (workdir / "sct-b.log").read_text(
            errors="replace").splitlines() if "taken over" in line or "rebuilt" in line]
        if killed_at is not None:
            print(f"\nsct-a was killed at {killed_at:.0f} s; sct-b:\n  " +
                  "\n  ".join(line.split(": ", 1)[-1] for line in takeover[-6:]))
        print(f"\nLogs and data: {workdir}" + ("" if self.keep else
                                               " (temporary; --keep DIR to keep it)"))


def _enter_pressed(wait_s: float) -> bool:
    if not sys.stdin.isatty():
        time.sleep(wait_s)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], wait_s)
    if ready:
        sys.stdin.readline()
        return True
    return False


def _by_instance(influx_url: str) -> dict[str, dict[str, float]]:
    try:
        series = servers.influx_query(
            influx_url, DEFAULT_DATABASE,
            f"SELECT last(received) AS received, last(written) AS written, "
            f"last(redelivered) AS redelivered, last(partitions_active) AS partitions "
            f"FROM {COLLECTOR} GROUP BY instance")
    except (OSError, servers.ServerError):
        return {}
    return {s["tags"]["instance"]: {k: (v or 0) for k, v in zip(
        s["columns"], s["values"][0], strict=True)} for s in series}


def _rate(now: dict[str, dict[str, float]], last: dict[str, dict[str, float]],
          name: str, span_s: float) -> float:
    """Messages a second between two looks (by the wall clock: a last() over several
    fields has no time of its own)."""
    if name not in now or name not in last or span_s <= 0:
        return 0.0
    return max(0.0, now[name]["received"] - last[name]["received"]) / span_s
