"""Real Mosquitto and InfluxDB as child processes, for the demo and the tests.

Each listens on 127.0.0.1 only, on a free port, with its data in a temporary folder, and is
stopped by its own PID. Nothing here downloads anything: the binaries come from Debian's
``mosquitto`` and ``influxdb`` packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import resource
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MOSQUITTO = "mosquitto"
INFLUXD = "influxd"


class ServerError(RuntimeError):
    """Raised when a server binary is missing or does not come up in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find(binary: str, package: str) -> str:
    """The path of ``binary``, or a ServerError saying which Debian package provides it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        raise ServerError(f"{binary} is not installed: apt-get install {package} "
                          f"(make test and make demo do this when run as root)")
    return path


def _raise_fd_limit() -> None:
    # One connection per simulated device: a broker needs more than the usual 1024 files.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


@dataclass
class Server:
    """A running child server: its process, port and folder."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    #: Processes started for this server, stopped after it (RabbitMQ's port mapper).
    companions: list[Server] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this server (SIGTERM, then SIGKILL) by its own PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        for companion in self.companions:
            companion.stop(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _spawn(name: str, argv: list[str], port: int, workdir: Path) -> Server:
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                               preexec_fn=_raise_fd_limit, start_new_session=True)
    return Server(name, process, port, workdir)


def _wait(server: Server, ready: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"{server.name} exited with {server.process.returncode}:\n"
                              f"{server.log_tail()}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    server.stop()
    raise ServerError(f"{server.name} did not come up in {timeout:.0f} s:\n{server.log_tail()}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_mosquitto(workdir: Path, timeout: float = 15.0, port: int | None = None,
                    max_inflight: int = 0) -> Server:
    """Start Mosquitto on a loopback port (a free one unless given), persistence on.

    Starting again with the same ``workdir`` and ``port`` brings back its persisted
    sessions, as a restarted broker would. ``max_inflight`` 0 is no limit (what sct's
    configurations set); 20 is Mosquitto's stock value.
    """
    binary = find(MOSQUITTO, "mosquitto")
    port = port or free_port()
    (workdir / "mosquitto-data").mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    # Started as root, Mosquitto switches to its own account and then cannot write its
    # persistence file into a folder private to root (pytest's temporary folders): every
    # autosave failed and a restart lost the sessions. So it keeps the starting account.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else ""
    conf.write_text(
        user + f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"  # loopback-only, for tests and the demo; secured: security/
        "persistence true\n"
        f"persistence_location {workdir / 'mosquitto-data'}/\n"
        "autosave_interval 30\n"
        # The stock 1000 silently drops messages for an absent persistent session.
        "max_queued_messages 2000000\n"
        "max_queued_bytes 0\n"
        # The collector acknowledges a message only once it is durable (after a batch is
        # written): it needs many unacknowledged messages in flight, not the stock 20.
        f"max_inflight_messages {max_inflight}\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\n"
    )
    server = _spawn("mosquitto", [binary, "-c", str(conf)], port, workdir)
    _wait(server, lambda: _port_open(port), timeout)
    return server


def start_mosquitto_with(conf: Path, ports: list[int], workdir: Path,
                         timeout: float = 15.0) -> Server:
    """Start Mosquitto with a configuration of its own (e.g. ``sct security generate``'s),
    once every port in ``ports`` is open. Its log is ``workdir/mosquitto.log``."""
    binary = find(MOSQUITTO, "mosquitto")
    server = _spawn("mosquitto", [binary, "-c", str(conf)], ports[0], workdir)
    _wait(server, lambda: all(_port_open(p) for p in ports), timeout)
    return server


def start_influxd(workdir: Path, timeout: float = 30.0, port: int | None = None) -> Server:
    """Start InfluxDB 1.x on a loopback port (a free one unless given), data in ``workdir``.

    Starting again with the same ``workdir`` and ``port`` brings back its data.
    """
    binary = find(INFLUXD, "influxdb")
    port, rpc_port = port or free_port(), free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\n  dir = "{workdir / "meta"}"\n'
        f'[data]\n  dir = "{workdir / "data"}"\n  wal-dir = "{workdir / "wal"}"\n'
        '  query-log-enabled = false\n  index-version = "inmem"\n'
        "[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "  max-body-size = 0\n"
        '[logging]\n  level = "warn"\n'
    )
    server = _spawn("influxd", [binary, "-config", str(conf)], port, workdir)
    _wait(server, lambda: _influx_ping(port) and _influx_takes_writes(port), timeout)
    return server


def _influx_ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=0.5) as resp:
            return bool(resp.status == 204)
    except (urllib.error.URLError, OSError):
        return False


def _influx_takes_writes(port: int) -> bool:
    """A database created and a point written: answering /ping is not yet taking writes."""
    base = f"http://127.0.0.1:{port}"
    try:
        influx_create_database(base, "_ready", timeout=2)
        with urllib.request.urlopen(urllib.request.Request(
                f"{base}/write?db=_ready", data=b"ready v=1", method="POST"),
                timeout=2) as resp:
            return bool(resp.status == 204)
    except (urllib.error.URLError, OSError, ServerError, ValueError, KeyError):
        return False


class EmbeddedBroker:
    """An amqtt broker in a thread of this process, for a demo where Mosquitto is missing.

    It is 30-50 times slower than Mosquitto: fine to watch, not for load.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._loop: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise ServerError("neither Mosquitto (apt-get install mosquitto) nor amqtt "
                              "(pip install 'sct[embedded-broker]') is installed") from exc
        config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                  "auth": {"allow-anonymous": True}, "topic-check": {"enabled": False}}
        async def start() -> Any:
            broker = Broker(config)  # built inside its own loop's thread
            await broker.start()
            return broker

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="amqtt")
        self._thread.start()
        self._broker = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):  # best effort at exit; the thread is a daemon
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def influx_statement(url: str, statement: str, timeout: float = 10.0) -> None:
    """Run one InfluxQL statement that returns nothing (``CREATE DATABASE``, ``DROP ...``)
    on a 1.x server, as a POST.

    Its answer is read to the end (:func:`_first_result`): InfluxDB sends its 200 header
    before it runs the statement and abandons the statement when the client hangs up, so a
    POST closed after the header can leave the database uncreated (a CI run on 2026-12-04
    saw the next write refused with 404; a test here saw a DROP not done).

    Raises:
        ServerError: the server answered with an error.
    """
    data = urllib.parse.urlencode({"q": statement}).encode()
    _first_result(urllib.request.Request(f"{url}/query", data=data, method="POST"),
                  statement, timeout)


def influx_create_database(url: str, database: str, timeout: float = 10.0) -> None:
    """Create ``database`` on a 1.x server (see :func:`influx_statement`)."""
    influx_statement(url, f'CREATE DATABASE "{database}"', timeout)


def influx_query(url: str, database: str, query: str, timeout: float = 10.0) -> list[Any]:
    """Run InfluxQL on a 1.x server; the ``series`` of the first statement (empty if none).

    Raises:
        ServerError: the server answered with an error.
    """
    params = urllib.parse.urlencode({"db": database, "q": query, "epoch": "ms"})
    result = _first_result(urllib.request.Request(f"{url}/query?{params}"), query, timeout)
    series: list[Any] = result.get("series", [])
    return series


def _first_result(request: urllib.request.Request, statement: str,
                  timeout: float) -> dict[str, Any]:
    """The first statement's result of a /query answer, read to its end.

    Raises:
        ServerError: the server answered with an error.
    """
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        result: dict[str, Any] = json.load(resp)["results"][0]
    if "error" in result:
        raise ServerError(f"InfluxDB refused {statement!r}: {result['error']}")
    return result
