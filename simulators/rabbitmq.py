"""Real RabbitMQ nodes as child processes: one alone, or a cluster of three on this machine.

Debian's ``rabbitmq-server`` (3.10), started directly (the ``/usr/sbin`` wrapper switches
user). Each node has its own node name, AMQP, distribution and MQTT ports, data and log
folders; the nodes of one cluster share one Erlang port mapper (``ERL_EPMD_PORT``, started
here as our own child so it stops with them, by PID) and one cookie (``HOME``). Everything
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from simulators.servers import (
    Server,
    ServerError,
    _port_open,
    _raise_fd_limit,
    _spawn,
    _wait,
    find,
    free_port,
)

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQCTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
#: How long a consumer may hold a message unacknowledged before the broker closes its
#: channel (RabbitMQ's ``consumer_timeout``, 30 min by default): set above the longest
#: InfluxDB outage the queues are sized for (README, "Scaling out").
CONSUMER_TIMEOUT_MS = 6 * 3600 * 1000


@dataclass
class Node:
    """One running node: its process (``server.port`` is its MQTT port) and AMQP port."""

    name: str
    server: Server
    amqp_port: int

    @property
    def mqtt_port(self) -> int:
        return self.server.port

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def alive(self) -> bool:
        return self.server.process.poll() is None

    def kill(self) -> None:
        """kill -9, as a crash would: the node's whole process group (started in a session
        of its own), since ``rabbitmq-server`` is a shell script whose Erlang VM is its
        child and would outlive a kill of the script alone."""
        if self.alive:
            os.killpg(self.server.process.pid, signal.SIGKILL)
            self.server.process.wait(30)


@dataclass
class Cluster:
    """Nodes that form one RabbitMQ cluster, and the port mapper they share."""

    nodes: list[Node]
    epmd: Server
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def amqp_urls(self) -> list[str]:
        return [node.amqp_url for node in self.nodes]

    def ctl(self, *args: str, node: int = 0, timeout: float = 60.0) -> str:
        """``rabbitmqctl`` against one node; its output."""
        done = subprocess.run([RABBITMQCTL, "-n", self.nodes[node].name, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode:
            raise ServerError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def stop(self) -> None:
        for node in self.nodes:
            node.server.stop(30)
        self.epmd.stop()


def _conf(workdir: Path, amqp_port: int, mqtt_port: int, peers: list[str]) -> Path:
    lines = [f"listeners.tcp.default = 127.0.0.1:{amqp_port}",
             f"mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}",
             # Anonymous MQTT (as the built-in guest account) on loopback only: tests, demo.
             "mqtt.allow_anonymous = true",
             f"consumer_timeout = {CONSUMER_TIMEOUT_MS}"]
    if peers:
        lines.append("cluster_formation.peer_discovery_backend = classic_config")
        lines += [f"cluster_formation.classic_config.nodes.{i} = {peer}"
                  for i, peer in enumerate(peers, 1)]
    conf = workdir / "rabbitmq.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _start_epmd(workdir: Path) -> tuple[Server, dict[str, str]]:
    if not Path(RABBITMQ_SERVER).exists():
        raise ServerError("rabbitmq-server is not installed: apt-get install rabbitmq-server "
                          "(make test does this when run as root)")
    epmd_port = free_port()
    # Erlang's port mapper would otherwise be started as a daemon that outlives the nodes.
    epmd = _spawn("epmd", [find("epmd", "erlang-base"), "-port", str(epmd_port),
                           "-address", "127.0.0.1"], epmd_port, workdir)
    _wait(epmd, lambda: _port_open(epmd_port), 15)
    env = {**os.environ, "HOME": str(workdir), "ERL_EPMD_PORT": str(epmd_port),
           "ERL_EPMD_ADDRESS": "127.0.0.1"}
    return epmd, env


def _launch(workdir: Path, name: str, env: dict[str, str], peers: list[str],
            mqtt_port: int | None = None) -> Node:
    workdir.mkdir(parents=True, exist_ok=True)
    mqtt_port = mqtt_port or free_port()
    amqp_port, dist_port = free_port(), free_port()
    (workdir / "mnesia").mkdir(exist_ok=True)
    (workdir / "log").mkdir(exist_ok=True)
    conf = _conf(workdir, amqp_port, mqtt_port, peers)
    (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
    node_env = {**env, "RABBITMQ_NODENAME": name, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(amqp_port), "RABBITMQ_DIST_PORT": str(dist_port),
                "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(workdir / "log"),
                "RABBITMQ_CONFIG_FILE": str(conf),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
                # The distribution (clustering) port on loopback too, not on every interface.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                    "-kernel inet_dist_use_interface {127,0,0,1}"}
    log = (workdir / "rabbitmq.log").open("wb")
    process = subprocess.Popen([RABBITMQ_SERVER], stdout=log, stderr=subprocess.STDOUT,
                               cwd=workdir, env=node_env, preexec_fn=_raise_fd_limit,
                               start_new_session=True)
    return Node(name, Server("rabbitmq", process, mqtt_port, workdir), amqp_port)


def _ready(node: Node, timeout: float) -> None:
    _wait(node.server, lambda: _port_open(node.mqtt_port) and _port_open(node.amqp_port),
          timeout)


def start_rabbitmq(workdir: Path, timeout: float = 120.0, mqtt_port: int | None = None,
                   name: str = "sct") -> Server:
    """Start one RabbitMQ node with its MQTT plugin at its defaults (``prefetch`` 10: that is
    what is tested); ``Server.port`` is its MQTT port."""
    workdir.mkdir(parents=True, exist_ok=True)
    epmd, env = _start_epmd(workdir)
    node = _launch(workdir, f"{name}@localhost", env, [], mqtt_port)
    node.server.companions.append(epmd)
    try:
        _ready(node, timeout)
    except ServerError:
        epmd.stop()
        raise
    return node.server


def start_cluster(workdir: Path, size: int = 3, timeout: float = 180.0) -> Cluster:
    """Start ``size`` nodes that form one cluster: the first alone, then the others, which
    find it by classic peer discovery and join it. Returns once every node is a running
    member."""
    workdir.mkdir(parents=True, exist_ok=True)
    epmd, env = _start_epmd(workdir)
    names = [f"rabbit{i}@localhost" for i in range(1, size + 1)]
    cluster = Cluster([], epmd, workdir, env)
    try:
        first = _launch(workdir / "rabbit1", names[0], env, names)
        cluster.nodes.append(first)
        _ready(first, timeout)
        others = [_launch(workdir / f"rabbit{i}", names[i - 1], env, names)
                  for i in range(2, size + 1)]
        cluster.nodes += others
        for node in others:
            _ready(node, timeout)
        status = cluster.ctl("cluster_status", "--formatter", "json")
        missing = [name for name in names if f'"{name}"' not in status.split(
            '"running_nodes"')[-1].split("]")[0]]
        if missing:
            raise ServerError(f"nodes not running in the cluster: {missing}\n{status}")
    except BaseException:
        cluster.stop()
        raise
    return cluster
