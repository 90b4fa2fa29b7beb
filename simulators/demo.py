"""``sct demo``: the whole thing on one machine, from nothing.

Starts a broker (Mosquitto, else an embedded amqtt broker) and InfluxDB (``influxd``) on
free loopback ports with their data in a temporary folder, generates a registry, runs the
collector and the simulator as child processes, and prints live progress until Ctrl-C or
``--duration``. At the end: what was published and written, the CPU each process used,
and how to look at the data.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devices.schema import COLLECTOR, DEFAULT_DATABASE
from simulators import servers
from simulators.registry_gen import generate, to_yaml

PROGRESS_EVERY_S = 2.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Demo:
    """One demo run; ``run()`` returns the exit code."""

    def __init__(self, communities: int, rate: float, duration: float | None,
                 keep: Path | None, since: str = "37h") -> None:
        self.since = since
        self.communities = communities
        self.rate = rate
        self.duration = duration
        self.keep = keep
        self.pids: dict[str, int] = {}
        self.cpu_used: dict[str, float] = {}
        self.workdir = Path(".")

    def run(self) -> int:
        try:
            servers.find(servers.INFLUXD, "influxdb")
        except servers.ServerError as exc:
            print(f"sct demo needs a local InfluxDB 1.x: {exc}\n"
                  "  (or run `make demo`, which installs it)", file=sys.stderr)
            return 1
        with contextlib.ExitStack() as stack:
            workdir = self.keep or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="sct-demo-")))
            workdir.mkdir(parents=True, exist_ok=True)
            self.workdir = workdir
            mqtt_url = self._broker(workdir, stack)
            influx = servers.start_influxd(_subdir(workdir, "influxdb"))
            stack.callback(influx.stop)
            self.pids["influxd"] = influx.process.pid
            influx_url = f"http://127.0.0.1:{influx.port}"
            return self._run_pipeline(workdir, mqtt_url, influx_url)
        return 1  # unreachable; keeps mypy sure of the return

    def _broker(self, workdir: Path, stack: contextlib.ExitStack) -> str:
        try:
            broker = servers.start_mosquitto(_subdir(workdir, "mosquitto"))
            stack.callback(broker.stop)
            self.pids["mosquitto"] = broker.process.pid
            return f"mqtt://127.0.0.1:{broker.port}"
        except servers.ServerError as exc:
            # amqtt loses acknowledgements with a few hundred connections (seen here with
            # 450 devices): keep the fleet small enough for it.
            self.communities, self.rate = min(self.communities, 1), min(self.rate, 20.0)
            print(f"Mosquitto unavailable ({exc});\nusing the embedded amqtt broker with "
                  f"{self.communities} community at {self.rate:g} readings/s (it is slow)")
            embedded = servers.EmbeddedBroker()
            embedded.start()
            stack.callback(embedded.stop)
            return f"mqtt://127.0.0.1:{embedded.port}"

    def _run_pipeline(self, workdir: Path, mqtt_url: str, influx_url: str) -> int:
        registry = workdir / "registry.yaml"
        registry.write_text(to_yaml(generate(self.communities, seed=1)), encoding="utf-8")
        env = dict(os.environ, SCT_MQTT__URL=mqtt_url, SCT_INFLUX__URL=influx_url,
                   SCT_REGISTRY__PATH=str(registry), SCT_STORAGE__DIR=str(workdir / "var"),
                   SCT_METRICS__INTERVAL_S=str(PROGRESS_EVERY_S))
        print(f"broker {mqtt_url}, InfluxDB {influx_url}, data in {workdir}")
        collector = _child("collector", ["collect"], env, workdir)
        self.pids["collector"] = collector.pid
        sim_seconds = self.duration if self.duration is not None else 7 * 86_400
        simulator = _child("simulator", ["simulate", "--registry", str(registry),
                                         "--rate", str(self.rate), "--duration",
                                         str(sim_seconds), "--since", self.since], env,
                           workdir)
        self.pids["simulator"] = simulator.pid
        started = time.monotonic()
        try:
            self._watch(influx_url, started, simulator)
        except KeyboardInterrupt:
            print("\nCtrl-C: stopping the simulator, then the collector (it flushes)")
        # Measured before stopping: a process that has exited has no /proc entry left.
        self.cpu_used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        _stop(simulator)
        _stop(collector)
        elapsed = time.monotonic() - started
        self._report(workdir, influx_url, elapsed)
        self._goal_report(workdir, env)
        return 0 if collector.returncode == 0 else 1

    def _watch(self, influx_url: str, started: float, simulator: subprocess.Popen[bytes]) -> None:
        print(f"{'t (s)':>6} {'accepted/s':>11} {'rejected/s':>11} {'written/s':>10} "
              f"{'written':>9} {'pending':>8} {'open alerts':>12}   (Ctrl-C to stop)")
        last: dict[str, Any] = {}
        while self.duration is None or time.monotonic() - started < self.duration:
            time.sleep(PROGRESS_EVERY_S)
            if simulator.poll() is not None:
                break
            now = _latest_metrics(influx_url)
            if now and last and now["time"] > last["time"]:
                span = (now["time"] - last["time"]) / 1000
                rate = {k: (now[k] - last[k]) / span for k in ("accepted", "rejected", "written")}
                print(f"{time.monotonic() - started:6.0f} {rate['accepted']:11.0f} "
                      f"{rate['rejected']:11.0f} {rate['written']:10.0f} {now['written']:9d} "
                      f"{now['pending']:8d} {self._open_alerts():12d}", flush=True)
            last = now or last

    def _open_alerts(self) -> int:
        try:
            return len(json.loads((self.workdir / "var" / "alerts.json").read_text()))
        except (OSError, ValueError):
            return 0

    def _report(self, workdir: Path, influx_url: str, elapsed: float) -> None:
        print(f"\nsimulator published (readings and events per kind):\n"
              f"{(workdir / 'simulator.out').read_text(errors='replace').strip()}")
        final = _latest_metrics(influx_url)
        if final:
            print(f"\ncollector: received {final['received']}, accepted {final['accepted']}, "
                  f"rejected {final['rejected']}, written {final['written']} lines "
                  f"in {elapsed:.0f} s")
        print("\nCPU used (seconds, and share of one core over the run):")
        for name in self.pids:
            used = self.cpu_used.get(name, 0.0)
            print(f"  {name:<10} {used:7.1f} s  {100 * used / max(elapsed, 1e-9):5.1f} %")
        print(f"\nLook at the data while a demo runs: influx -host 127.0.0.1 -port "
              f"{influx_url.rsplit(':', 1)[1]} -database {DEFAULT_DATABASE}\n"
              f"  e.g. SELECT count(*) FROM streetlight; SELECT * FROM {COLLECTOR} "
              f"ORDER BY time DESC LIMIT 1\nDead letters and open alerts: "
              f"SCT_STORAGE__DIR={workdir / 'var'} sct deadletter list (or sct alerts)\n"
              f"Logs: {workdir}/*.log"
              + ("" if self.keep else "  (a temporary folder: gone when the demo ends; "
                 "use --keep DIR to keep everything)"))


    def _goal_report(self, workdir: Path, env: dict[str, str]) -> None:
        """The green-community indicators now, and ``sct report`` of the demo's data: into
        the workdir with ``--keep``; else into a folder of its own that outlives the demo
        (the temporary workdir is removed when the demo ends, and a report path printed
        last, then gone, is no report)."""
        out = workdir / "report" if self.keep else Path(tempfile.mkdtemp(prefix="sct-report-"))
        for args in (["kpi"], ["report", "--out", str(out), "--range", "7d"]):
            run = subprocess.run([sys.executable, "-m", "collector", *args], env=env,
                                 capture_output=True, text=True, timeout=300)
            if run.returncode != 0:
                print(f"\nsct {args[0]} failed: {run.stderr.strip()[-500:]}")
                return
            if args[0] == "kpi":
                print(f"\ngreen-community indicators (sct kpi):\n{run.stdout.rstrip()}")
        print(f"\nReport (goal board and key charts, HTML and PNG): {out / 'index.html'}"
              + ("" if self.keep else "  (kept after the demo; remove the folder when done)"))


def _subdir(workdir: Path, name: str) -> Path:
    path = workdir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _child(name: str, args: list[str], env: dict[str, str],
           workdir: Path) -> subprocess.Popen[bytes]:
    out = (workdir / f"{name}.out").open("wb")
    log = (workdir / f"{name}.log").open("wb")
    # Own session: Ctrl-C reaches the demo only, which then stops the children in order.
    return subprocess.Popen([sys.executable, "-m", "collector", *args], env=env, stdout=out,
                            stderr=log, start_new_session=True)


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _latest_metrics(influx_url: str) -> dict[str, Any]:
    try:
        series = servers.influx_query(influx_url, DEFAULT_DATABASE,
                                      f"SELECT * FROM {COLLECTOR} ORDER BY time DESC LIMIT 1")
    except (OSError, servers.ServerError):
        return {}
    if not series:
        return {}
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    return {k: (v if v is not None else 0) for k, v in row.items()}
