"""What the benchmarks share: a fast QoS 1 load publisher, the collector as a child process,
CPU and peak RSS of processes, and py-spy profiles reduced to their top entries.

The load publisher writes prebuilt PUBLISH packets straight to a socket (``mqttwire``): a
Python MQTT client (paho: about 25,000 messages/s) would be slower than the broker and
would measure itself instead of the collector.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector import mqttwire as wire
from simulators import servers
from simulators.registry_gen import generate, to_yaml

TIMEOUT_S = 600   # every wait is bounded


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process, read from /proc."""

    cpu_s: float
    peak_rss_mb: float

    @classmethod
    def of(cls, pid: int) -> Usage:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        peak = next(int(line.split()[1]) * 1024 for line in
                    Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM"))
        return cls(cpu, peak / 2**20)


class CpuWatch:
    """CPU seconds each named process spent between construction and :meth:`stop`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start = {name: Usage.of(pid).cpu_s for name, pid in pids.items()}
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Share of one core per process over the window (1.0 = a whole core)."""
        wall = time.monotonic() - self._t0
        return {name: round((Usage.of(pid).cpu_s - self._start[name]) / wall, 3)
                for name, pid in self._pids.items()}


class Publisher:
    """A raw QoS 1 publisher: one connection, PUBLISH packets written in chunks, PUBACKs
    counted by a reader thread. Unlimited in flight (Mosquitto's default for clients)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(wire.connect(client_id, 60, True))
        self.acked = 0
        self._next_id = 0
        self._connack = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._connack.wait(10):
            raise RuntimeError("the broker did not answer the load publisher's CONNECT")

    def packet(self, topic: str, payload: bytes) -> bytes:
        self._next_id = self._next_id % 65535 + 1
        return wire.publish(topic, payload, self._next_id)

    def send(self, packets: list[bytes]) -> None:
        self.sock.sendall(b"".join(packets))

    def wait_acked(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.acked < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.acked} of {count} publishes acknowledged")
            time.sleep(0.02)

    def close(self) -> None:
        self.sock.sendall(wire.DISCONNECT_PACKET)
        self.sock.close()

    def _read(self) -> None:
        def on_control(kind: int, body: bytes) -> None:
            if kind == wire.PUBACK:
                self.acked += 1
            elif kind == wire.CONNACK:
                self._connack.set()
        parser = wire.Parser(lambda *_: None, on_control)
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            parser.feed(data)


_ELSEWHERE = """import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path.insert(0, sys.argv.pop(1))
runpy.run_module("collector", run_name="__main__", alter_sys=True)
"""


def under_py_spy(argv: list[str], profile: Path) -> list[str]:
    """``argv`` run under py-spy, its raw profile written to ``profile``."""
    return [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
            "--rate", "200", "--nonblocking", "-o", str(profile), "--", *argv]


def first_child(pid: int, timeout_s: float = 10.0) -> int:
    """The first child of process ``pid`` (the program py-spy runs; a node's Erlang VM under
    its start script), once there is one."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout_s
    while not (found := children.read_text().split()):
        if time.monotonic() > deadline:
            raise SystemExit(f"process {pid} started no child in {timeout_s:.0f} s")
        time.sleep(0.01)
    return int(found[0])


@dataclass
class Collector:
    """``sct collect`` as a child process, optionally under py-spy."""

    env: dict[str, str]
    workdir: Path
    profile: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started: float = field(default=0.0, init=False)
    ready_s: float = field(default=0.0, init=False)

    @property
    def log(self) -> Path:
        return self.workdir / "collector.log"

    def start(self, ready: str = "subscribed to") -> None:
        """Start and wait until the log says ``ready`` (by default: subscribed); ``ready_s``
        is how long that took. A drain waits for "connected to" instead: a persistent
        session's backlog comes ahead of the SUBACK, so "subscribed to" is logged only once
        the collector has read the backlog, which is what a drain measures."""
        argv = [sys.executable, "-m", "collector", "collect"]
        other = self.env.get("BENCH_COLLECTOR_PATH")
        if other:
            # The editable install's import hook would win over PYTHONPATH: take it out.
            argv = [sys.executable, "-c", _ELSEWHERE, other, "collect"]
        if self.profile is not None:
            argv = under_py_spy(argv, self.profile)
        self.started = time.monotonic()
        with self.log.open("wb") as log:    # fresh: an earlier "subscribed to" must not count
            self.process = subprocess.Popen(argv, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        while ready not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() - self.started > 60:
                raise SystemExit(f"the collector did not start: see {self.log}")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - self.started

    @property
    def pid(self) -> int:
        """The collector's own PID (py-spy's child when profiling)."""
        assert self.process is not None
        if self.profile is None:
            return self.process.pid
        return first_child(self.process.pid)

    def stop(self) -> Usage:
        """SIGTERM (a clean flush), and the process's usage just before."""
        assert self.process is not None
        usage = Usage.of(self.pid)
        os.kill(self.pid, signal.SIGTERM)
        self.process.wait(120)
        return usage


@contextlib.contextmanager
def running_servers(work: Path, communities: int = 2
                    ) -> Iterator[tuple[servers.Server, servers.Server, dict[str, Any]]]:
    """Mosquitto and InfluxDB in ``work``, and a registry written to work/registry.yaml."""
    (work / "mq").mkdir()
    (work / "influx").mkdir()
    registry = generate(communities, seed=1)
    (work / "registry.yaml").write_text(to_yaml(registry))
    mq = servers.start_mosquitto(work / "mq")
    try:
        influx = servers.start_influxd(work / "influx")
        try:
            yield mq, influx, registry
        finally:
            influx.stop()
    finally:
        mq.stop()


def collector_env(work: Path, mq: servers.Server, influx: servers.Server, name: str,
                  **extra: str) -> dict[str, str]:
    """The environment of a collector with its own client id, database and storage
    (imported from ``$BENCH_COLLECTOR_PATH`` when set: another version, for comparison)."""
    return {**os.environ, "SCT_MQTT__URL": f"mqtt://127.0.0.1:{mq.port}",
            "SCT_MQTT__CLIENT_ID": f"bench-{name}",
            "SCT_INFLUX__URL": f"http://127.0.0.1:{influx.port}",
            "SCT_INFLUX__DATABASE": name.replace("-", "_"),
            "SCT_REGISTRY__PATH": str(work / "registry.yaml"),
            "SCT_STORAGE__DIR": str(work / f"var-{name}"), **extra}


def forget_session(port: int, client_id: str) -> None:
    """End the persistent session of ``client_id`` (a clean-session connect discards it).

    A session left behind stays subscribed: the broker then queues every later message of
    the bench for it too, which slows the later measurements, and the next client with that
    id drains those leftovers instead of its own load."""
    subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", client_id,
                    "-t", "sc/#", "-E"], capture_output=True, timeout=30, check=True)


def count_now(influx_url: str, database: str, query: str) -> int:
    """What a ``count`` query says now (0 before the database exists)."""
    try:
        series = servers.influx_query(influx_url, database, query)
    except servers.ServerError:   # no database before the collector's first write
        return 0
    return int(series[0]["values"][0][1]) if series else 0


class LandedInflux:
    """How many of a drain's ``count`` readings (stamped ``first``, ``first`` + 1 ms, ...)
    InfluxDB holds, asked cheaply while it ingests them: a count over the whole drain,
    asked every 20 ms, would cost InfluxDB CPU the ceiling it is read against never spends
    (the count scans every point landed so far). So the last ``TAIL`` readings are counted
    until all of them are there, and only then the whole drain, until it is complete.
    Until the tail is complete the answer is a lower bound (``total`` gives the count)."""

    TAIL = 1_000

    def __init__(self, url: str, database: str, first: int, count: int,
                 measurement: str = "streetlight") -> None:
        self._url, self._database = url, database
        self._tail = min(self.TAIL, count)
        self._all = f"SELECT count(power_w) FROM {measurement} WHERE time >= {first}ms"
        self._last = f"SELECT count(power_w) FROM {measurement} WHERE time >= " \
                     f"{first + count - self._tail}ms"

    def __call__(self) -> int:
        tail = count_now(self._url, self._database, self._last)
        return self.total() if tail >= self._tail else tail

    def total(self) -> int:
        return count_now(self._url, self._database, self._all)


def wait_count(influx_url: str, database: str, query: str, count: int) -> tuple[float, int]:
    """Poll a ``count`` query until it reaches ``count``: (monotonic time, last count)."""
    deadline = time.monotonic() + TIMEOUT_S
    landed = 0
    while time.monotonic() < deadline:
        landed = count_now(influx_url, database, query)
        if landed >= count:
            break
        time.sleep(0.05)
    return time.monotonic(), landed


def top_of_profile(raw: Path, entries: int = 12) -> list[tuple[str, float]]:
    """The functions with the most samples of their own (py-spy's collapsed stacks)."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        n = int(samples)
        total += n
        frame = stack.rsplit(";", 1)[-1]
        own[frame.split(" (")[0] + " " + _where(frame)] += n
    return [(name, round(100 * n / max(total, 1), 1)) for name, n in own.most_common(entries)]


def _where(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "module.py"
    if "(" not in frame:
        return ""
    path = frame.rsplit("(", 1)[1].split(":")[0]
    return "(" + "/".join(path.split("/")[-2:]) + ")"
