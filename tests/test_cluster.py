"""Cluster mode on a real three-node RabbitMQ cluster (Debian's rabbitmq-server 3.10).

Devices publish over MQTT to the nodes' MQTT plugin; collectors in ``amqp`` mode consume
the partition queues. Each test has its own topology (``amqp.prefix``) and database on the
session's cluster and InfluxDB; the test that kills a node comes last.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import orjson
import pytest
from conftest import publish, wait_for
from loadgen import Load

from collector.cluster.source import own_share
from simulators import servers
from simulators.rabbitmq import Cluster
from simulators.registry_gen import generate, to_yaml

PARTITIONS = 4


class ClusterRig:
    """A registry, a topology and collectors of one test on the shared cluster."""

    def __init__(self, root: Path, cluster: Cluster, influx_port: int, communities: int = 6,
                 urls: list[str] | None = None) -> None:
        self.root = root
        self.cluster = cluster
        self.prefix = "t" + uuid.uuid4().hex[:8]
        self.database = self.prefix
        self.influx_url = f"http://127.0.0.1:{influx_port}"
        self.registry = root / "registry.yaml"
        self.registry.write_text(to_yaml(generate(communities, seed=11)), encoding="utf-8")
        self.urls = urls or cluster.amqp_urls
        self.collectors: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, instance: str = "sct-x", **extra: str) -> dict[str, str]:
        return {**os.environ,
                "SCT_SOURCE__KIND": "amqp",
                "SCT_AMQP__URLS": orjson.dumps(self.urls).decode(),
                "SCT_AMQP__PREFIX": self.prefix,
                "SCT_AMQP__PARTITIONS": str(PARTITIONS),
                "SCT_AMQP__PEERS": '["sct-a", "sct-b"]',
                "SCT_AMQP__STANDBY_DELAY_S": "1",
                "SCT_AMQP__PREFETCH": "500",
                "SCT_INFLUX__URL": self.influx_url,
                "SCT_INFLUX__DATABASE": self.database,
                "SCT_INFLUX__FLUSH_INTERVAL_S": "0.2",
                "SCT_INFLUX__RETRY_MAX_S": "2",
                "SCT_REGISTRY__PATH": str(self.registry),
                "SCT_STORAGE__DIR": str(self.root / instance),
                "SCT_METRICS__INSTANCE": instance,
                "SCT_METRICS__INTERVAL_S": "1", **extra}

    def sct(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector", *args], env=self.env(),
                              capture_output=True, text=True, timeout=120, check=False)

    def setup(self) -> None:
        done = self.sct("cluster", "setup")
        assert done.returncode == 0, done.stdout + done.stderr

    def log(self, instance: str) -> str:
        path = self.root / f"{instance}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def communities(self) -> list[str]:
        import yaml
        return [c["id"] for c in yaml.safe_load(self.registry.read_text())["communities"]]

    def active(self, instance: str) -> set[int]:
        """The partitions a collector said it became active on."""
        return {int(line.split("active on partition ")[1].split()[0])
                for line in self.log(instance).splitlines() if "active on partition" in line}

    def start(self, instance: str, **extra: str) -> None:
        before = self.log(instance).count("subscribed to partitions")
        with (self.root / f"{instance}.log").open("ab") as log:
            self.collectors[instance] = process = subprocess.Popen(
                [sys.executable, "-m", "collector", "collect"], env=self.env(instance, **extra),
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.log(instance).count("subscribed to partitions") > before
                 or process.poll() is not None, 60, f"collector {instance} to subscribe")
        assert process.poll() is None, self.log(instance)[-3000:]

    def logged_at(self, instance: str, text: str, after: float) -> float | None:
        """When a log line containing ``text`` was first written after ``after`` (epoch s)."""
        from datetime import datetime
        for line in self.log(instance).splitlines():
            if text in line:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if at >= after:
                    return at
        return None

    def counted(self, field: str) -> int:
        """The sum over the collectors of a self-metrics counter's last value."""
        series = self.query(f"SELECT last({field}) FROM collector GROUP BY instance")
        return sum(int(s["values"][0][1] or 0) for s in series)

    def kill(self, instance: str) -> None:
        process = self.collectors[instance]
        process.kill()
        process.wait()

    def stop_all(self) -> None:
        for process in self.collectors.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def query(self, q: str) -> list[dict]:
        try:
            return servers.influx_query(self.influx_url, self.database, q)
        except servers.ServerError as exc:
            if "database not found" in str(exc):
                return []
            raise

    def landed(self, load: Load) -> int:
        """Distinct readings of ``load`` in InfluxDB (each has its own ts)."""
        series = self.query(f"SELECT count(*) FROM /.*/ WHERE time >= {load.base_ms}ms AND "
                            f"time < {load.base_ms + load.count}ms")
        return sum(max(v for v in s["values"][0][1:] if v is not None) for s in series
                   if s["name"] in load.per_kind)

    def last_metrics(self) -> dict[str, dict]:
        """Each collector's last self-metrics point, by instance."""
        series = self.query("SELECT last(received), last(redelivered), last(accepted) "
                            "FROM collector GROUP BY instance")
        return {s["tags"]["instance"]: dict(zip(["time", "received", "redelivered",
                                                 "accepted"], s["values"][0], strict=True))
                for s in series}

    def queue_depths(self) -> dict[str, int]:
        """Messages in each partition queue, ready and unacknowledged."""
        out = self.cluster.ctl("list_queues", "-q", "name", "messages", node=1)
        return {name: int(n) for name, n in (line.split() for line in out.splitlines()
                                             if line.startswith(self.prefix + ".partition."))}

    def alerts(self, rule: str) -> int:
        series = self.query(f"SELECT count(\"value\") FROM alert WHERE rule = '{rule}'")
        return int(series[0]["values"][0][1]) if series else 0


@pytest.fixture
def rig(tmp_path: Path, rabbit_cluster: Cluster, influxdb: servers.Server
        ) -> Iterator[ClusterRig]:
    made = ClusterRig(tmp_path, rabbit_cluster, influxdb.port)
    yield made
    made.stop_all()


def unrouted_count(cluster: Cluster, prefix: str) -> int:
    async def count() -> int:
        connection = await aio_pika.connect(cluster.amqp_urls[0])
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{prefix}.unrouted", passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await connection.close()
    return asyncio.run(count())


def test_setup_declares_once_and_a_collector_refuses_to_start_without_it(
        rig: ClusterRig) -> None:
    refused = subprocess.run([sys.executable, "-m", "collector", "collect"],
                             env=rig.env("sct-a"), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert f"queue {rig.prefix}.partition.0" in refused.stderr
    assert "sct cluster setup" in refused.stderr

    first = rig.sct("cluster", "setup")
    assert first.returncode == 0, first.stderr
    assert f"added queue {rig.prefix}.partition.3 (quorum)" in first.stdout
    assert first.stdout.count("added community") == 6
    layout = [rig.cluster.ctl(what, "-q", *columns, node=1) for what, *columns in (
        ("list_queues", "name", "type", "arguments"),
        ("list_exchanges", "name", "type", "arguments"),
        ("list_bindings", "source_name", "destination_name", "routing_key"))]
    again = rig.sct("cluster", "setup")
    assert again.returncode == 0, again.stderr
    assert "nothing to add" in again.stdout and "added" not in again.stdout
    assert [rig.cluster.ctl(what, "-q", *columns, node=1) for what, *columns in (
        ("list_queues", "name", "type", "arguments"),
        ("list_exchanges", "name", "type", "arguments"),
        ("list_bindings", "source_name", "destination_name", "routing_key"))] == layout

    bigger = generate(7, seed=11)
    rig.registry.write_text(to_yaml(bigger), encoding="utf-8")
    grown = rig.sct("cluster", "setup")
    new = sorted({c["id"] for c in bigger["communities"]} - {
        c["id"] for c in generate(6, seed=11)["communities"]})
    assert [line for line in grown.stdout.splitlines() if line.startswith("added")] == \
        [f"added community {c} -> partition {_partition(c)}" for c in new]
    changed = rig.sct("cluster", "setup", "--partitions", "8")
    assert changed.returncode == 2 and "fixed once chosen" in changed.stderr


def _partition(community: str) -> int:
    from collector.cluster.topology import partition_of
    return partition_of(community, PARTITIONS)


def test_an_unroutable_device_message_lands_in_the_alternate_queue(rig: ClusterRig) -> None:
    rig.setup()
    port = rig.cluster.nodes[1].mqtt_port
    publish(port, [("sc/no-such-community/streetlight/lamp-x/telemetry", b'{"dim_pct": 1}'),
                   ("sc/no-such-community/alert/streetlight/lamp-x", b"{}")])
    wait_for(lambda: unrouted_count(rig.cluster, rig.prefix) == 1, 20,
             "the unroutable reading in the alternate queue")
    time.sleep(0.5)
    # The alert topic is not a device channel: it never enters the partitions' exchange.
    assert unrouted_count(rig.cluster, rig.prefix) == 1


def test_two_collectors_over_two_nodes_write_each_reading_once(rig: ClusterRig) -> None:
    rig.setup()
    kpi_every = {"SCT_AMQP__STANDBY_DELAY_S": "5", "SCT_KPI__INTERVAL_S": "5"}
    rig.start("sct-a", **kpi_every)
    rig.start("sct-b", **kpi_every)
    loads = [Load(rig.cluster.nodes[i].mqtt_port, rig.registry, count=3_000, rate=3_000,
                  client_id=f"load-{rig.prefix}-{i}") for i in (1, 2)]
    loads[1].base_ms = loads[0].base_ms - 7_200_000
    for load in loads:
        load.start()
    for load in loads:
        load.wait_acknowledged(60)
    published = sum(load.published for load in loads)
    wait_for(lambda: sum(rig.landed(load) for load in loads) == published, 90,
             "every reading in InfluxDB")
    # Each collector took its own share (the partitions that have communities), no more.
    used = {_partition(c) for c in rig.communities()}
    for instance in ("sct-a", "sct-b"):
        assert rig.active(instance) == own_share(instance, ["sct-a", "sct-b"],
                                                 PARTITIONS) & used, instance
    def counted() -> dict[str, dict]:
        metrics = rig.last_metrics()
        total = sum(m["received"] for m in metrics.values())
        redelivered = sum(m["redelivered"] for m in metrics.values())
        return metrics if len(metrics) == 2 and total == published + redelivered else {}
    wait_for(counted, 20, "the collectors' counts to add up")
    time.sleep(1.0)
    assert sum(rig.landed(load) for load in loads) == published
    # The KPI job: each community computed by one collector, the one active on its partition.
    def computed(instance: str) -> int | None:
        lines = [line for line in rig.log(instance).splitlines() if "KPI: " in line]
        return int(lines[-1].split("KPI: ")[1].split()[0]) if lines else None
    wait_for(lambda: computed("sct-a") is not None and computed("sct-b") is not None and
             computed("sct-a") + computed("sct-b") == len(rig.communities()), 30,  # type: ignore[operator]
             "each community's KPI computed once")
    print(f"\nFAILURE nothing (two collectors, devices on two nodes) | {published} | "
          f"{sum(rig.landed(load) for load in loads)} | none ({rig.counted('redelivered')} "
          f"redeliveries) | -")


def test_kill_an_active_collector_mid_stream_its_partitions_move_and_nothing_is_lost(
        rig: ClusterRig) -> None:
    rig.setup()
    rig.start("sct-a", SCT_AMQP__STANDBY_DELAY_S="5")
    rig.start("sct-b", SCT_AMQP__STANDBY_DELAY_S="5")
    wait_for(lambda: "standing by on" in rig.log("sct-a") and
             "standing by on" in rig.log("sct-b"), 30, "both collectors to stand by")
    started_ms = int(time.time() * 1000)
    load = Load(rig.cluster.nodes[1].mqtt_port, rig.registry, count=16_000, rate=2_000,
                client_id=f"load-{rig.prefix}",
                kinds=("streetlight", "water_meter", "door", "smoke", "camera")).start()
    # Clockless bins: no ts, stamped on receipt; the stamps must survive the take-over.
    clockless = Load(rig.cluster.nodes[2].mqtt_port, rig.registry, count=3_000, rate=500,
                     client_id=f"clockless-{rig.prefix}", with_ts=False,
                     kinds=("waste_bin",)).start()
    # Killed a quarter of the way through publishing, once readings are landing (the
    # publisher keeps its pace whatever the collectors do).
    wait_for(lambda: load.published >= load.count // 4 and rig.landed(load) > 0, 60,
             "the stream to be under way")
    rig.kill("sct-a")
    killed_at, killed_wall = time.monotonic(), time.time()
    assert load.published < load.count, "the collector was killed after the stream ended"
    wait_for(lambda: rig.active("sct-b") >= {_partition(c) for c in rig.communities()}, 60,
             "sct-b to take over every partition")
    took_over = time.monotonic() - killed_at
    load.wait_acknowledged(60)
    clockless.wait_acknowledged(60)
    wait_for(lambda: rig.landed(load) == load.published, 90, "every reading in InfluxDB")
    def stamped() -> int:
        series = rig.query(f"SELECT count(fill_pct) FROM waste_bin WHERE time >= "
                           f"{started_ms}ms")
        return int(series[0]["values"][0][1]) if series else 0
    wait_for(lambda: stamped() >= clockless.published, 60, "every clockless reading")
    time.sleep(1.0)
    taken = rig.logged_at("sct-b", "(taken over)", killed_wall)
    warmed = rig.logged_at("sct-b", "rebuilt from InfluxDB", taken or killed_wall)
    print(f"\nFAILURE kill -9 of an active collector | {load.published} + {clockless.published} "
          f"without ts | {rig.landed(load)} + {stamped()} | none (the redeliveries, "
          f"{rig.counted('redelivered')}, overwrote themselves; stamps given back: "
          f"{rig.counted('stamps_reused')}) | first delivery to sct-b "
          f"{(taken or 0) - killed_wall:.2f} s after the kill, warm-up done "
          f"{(warmed or 0) - killed_wall:.2f} s after (test saw every partition held in "
          f"{took_over:.1f} s)")
    assert rig.landed(load) == load.published
    assert stamped() == clockless.published
    assert "taken over" in rig.log("sct-b")
    # Redeliveries were written again (overwriting themselves) but not fed to the rules: a
    # cumulative counter never went backwards in what was processed ...
    assert rig.alerts("counter_backwards") == 0
    # ... and each alert transition is there once: raised and cleared alternate. (Not for
    # device_silent: its raise is stamped with the clock and its clear with the reading,
    # which this load sends an hour old, so by time its transitions are out of order.)
    series = rig.query("SELECT state FROM alert WHERE rule != 'device_silent' "
                       "GROUP BY device, rule")
    assert series, "the load raises alerts (low batteries), or this checks nothing"
    for s in series:
        states = [row[1] for row in s["values"]]
        assert all(a != b for a, b in itertools.pairwise(states)), (s["tags"], states)
    assert "rebuilt from InfluxDB" in rig.log("sct-b")


def _devices(rig: ClusterRig, kind: str) -> list[tuple[str, str]]:
    import yaml
    data = yaml.safe_load(rig.registry.read_text())
    return [(d["community"], d["id"]) for d in data["devices"] if d["kind"] == kind]


def _alert_rows(rig: ClusterRig, device: str) -> list[str]:
    series = rig.query(f"SELECT state FROM alert WHERE device = '{device}'")
    return [row[1] for row in series[0]["values"]] if series else []


class Subscriber:
    """An operator's MQTT client on another node, collecting the alerts it receives."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        self.got: list[tuple[str, dict]] = []
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                                   client_id=f"ops-{uuid.uuid4().hex[:6]}")
        self._client.on_message = lambda _c, _u, m: self.got.append(
            (m.topic, orjson.loads(m.payload)))
        self._client.connect("127.0.0.1", port)
        self._client.subscribe("sc/+/alert/#", qos=1)
        self._client.loop_start()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def test_an_open_alert_stays_open_across_a_take_over_and_reaches_operators_once(
        rig: ClusterRig) -> None:
    rig.setup()
    mine = own_share("sct-a", ["sct-a", "sct-b"], PARTITIONS)
    community, smoke = next((c, d) for c, d in _devices(rig, "smoke")
                            if _partition(c) in mine)
    topic = f"sc/{community}/smoke/{smoke}/telemetry"
    ops = Subscriber(rig.cluster.nodes[2].mqtt_port)
    rig.start("sct-a", SCT_AMQP__STANDBY_DELAY_S="3")
    rig.start("sct-b", SCT_AMQP__STANDBY_DELAY_S="3")
    wait_for(lambda: "standing by on" in rig.log("sct-a") and
             "standing by on" in rig.log("sct-b"), 30, "both collectors to stand by")
    try:
        now = int(time.time() * 1000)
        publish(rig.cluster.nodes[1].mqtt_port,
                [(topic, orjson.dumps({"ts": now - 3000, "alarm": True}))])
        wait_for(lambda: _alert_rows(rig, smoke) == ["raised"], 30, "the alarm raised")
        listed = rig.sct("alerts")    # from InfluxDB: whichever collector raised it
        assert "smoke_alarm" in listed.stdout and smoke in listed.stdout, listed.stderr
        time.sleep(4)   # past the standby delay: sct-b stands by on sct-a's partitions
        rig.kill("sct-a")
        # Still ringing, then over: sct-b takes the partition over with the alarm open.
        publish(rig.cluster.nodes[1].mqtt_port,
                [(topic, orjson.dumps({"ts": now - 2000, "alarm": True})),
                 (topic, orjson.dumps({"ts": now - 1000, "alarm": False}))])
        wait_for(lambda: _alert_rows(rig, smoke) == ["raised", "cleared"], 30,
                 "the alarm cleared, once")
        wait_for(lambda: len(ops.got) >= 2, 20, "operators to hear of both")
        time.sleep(1.0)
    finally:
        ops.close()
    assert _alert_rows(rig, smoke) == ["raised", "cleared"]
    assert [(t, m["state"]) for t, m in ops.got] == [
        (f"sc/{community}/alert/smoke/{smoke}", "raised"),
        (f"sc/{community}/alert/smoke/{smoke}", "cleared")]
    assert "1 open alerts" in rig.log("sct-b")
    assert "0 open alerts" in rig.sct("alerts").stderr
    # The alerts on amq.topic never came back into a partition as device messages.
    assert unrouted_count(rig.cluster, rig.prefix) == 0
    listed = rig.sct("deadletter", "list")
    assert listed.returncode == 0 and "0 shown of 0" in listed.stderr


def test_a_taken_over_device_goes_on_with_its_statistical_detector(rig: ClusterRig) -> None:
    """t2 learns a day of readings before it scores: the collector taking a partition over
    resumes it from the state stream instead of learning another day (a cold one would say
    nothing of the odd readings below)."""
    import numpy as np

    rig.setup()
    mine = own_share("sct-a", ["sct-a", "sct-b"], PARTITIONS)
    community, probe = next((c, d) for c, d in _devices(rig, "water_quality")
                            if _partition(c) in mine)
    topic = f"sc/{community}/water_quality/{probe}/telemetry"
    extra = {"SCT_AMQP__STANDBY_DELAY_S": "3", "SCT_AMQP__STATE_EVERY_S": "1"}
    rig.start("sct-a", **extra)
    rig.start("sct-b", **extra)
    wait_for(lambda: "standing by on" in rig.log("sct-a") and
             "standing by on" in rig.log("sct-b"), 30, "both collectors to stand by")
    rng = np.random.default_rng(16)
    start = int(time.time() * 1000) - 1506 * 60_000
    # A day and a bit of a probe's minutes, within the GB 5749 limits (no rule fires).
    history = [(topic, orjson.dumps({
        "ts": start + i * 60_000, "turbidity_ntu": round(0.3 + 0.03 * rng.normal(), 4),
        "chlorine_mg_l": round(0.5 + 0.05 * rng.normal(), 4),
        "conductivity_us_cm": round(400 + 10 * rng.normal(), 2)})) for i in range(1500)]
    publish(rig.cluster.nodes[1].mqtt_port, history)

    def stored() -> int:
        series = rig.query(f"SELECT count(turbidity_ntu) FROM water_quality "
                           f"WHERE device = '{probe}'")
        return int(series[0]["values"][0][1]) if series else 0

    wait_for(lambda: stored() == 1500, 60, "the probe's history in InfluxDB")
    wait_for(lambda: bool(rig.query(
        "SELECT last(detector_states_saved) FROM collector WHERE instance = 'sct-a' "
        "AND detector_states_saved >= 1 AND time > now() - 3s")), 30,
        "sct-a to save the probe's detector state")
    time.sleep(4)   # past the standby delay: sct-b stands by on sct-a's partitions
    rig.kill("sct-a")
    # Still inside every limit, but turbidity up, chlorine down and conductivity up at once:
    # far outside what this probe's readings did together.
    odd = [(topic, orjson.dumps({"ts": start + i * 60_000, "turbidity_ntu": 0.6,
                                 "chlorine_mg_l": 0.35, "conductivity_us_cm": 440.0}))
           for i in range(1500, 1505)]
    publish(rig.cluster.nodes[2].mqtt_port, odd)

    def anomalies() -> list[tuple[str, str]]:
        series = rig.query(f"SELECT state, message FROM alert WHERE device = '{probe}' "
                           "AND rule = 'anomaly'")
        return [(r[1], r[2].split("：")[0]) for r in series[0]["values"]] if series else []

    wait_for(anomalies, 60, "the anomaly alert from sct-b")
    # In Chinese, the collector's default (ui.language).
    assert anomalies() == [("raised", "多项读数同时异常")]
    assert "statistical detectors resumed" in rig.log("sct-b")
    resumed = [line for line in rig.log("sct-b").splitlines()
               if f"partition {_partition(community)} (" in line and "resumed" in line]
    assert resumed and " 0 devices' statistical" not in resumed[-1], resumed


def test_refusals_and_poison_messages_are_kept_in_the_stream_listed_and_replayed(
        rig: ClusterRig) -> None:
    done = subprocess.run([sys.executable, "-m", "collector", "cluster", "setup"],
                          env=rig.env(SCT_AMQP__DELIVERY_LIMIT="2"), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    community, lamp = _devices(rig, "streetlight")[0]
    topic = f"sc/{community}/streetlight/{lamp}/telemetry"
    now = int(time.time() * 1000)
    good = orjson.dumps({"ts": now - 5000, "dim_pct": 40.0})
    publish(rig.cluster.nodes[1].mqtt_port, [(topic, good)])

    async def poison() -> None:
        # A consumer that never gets through the message (as one that crashes on it
        # would): after x-delivery-limit deliveries the broker dead-letters it.
        connection = await aio_pika.connect(rig.cluster.amqp_urls[1])
        try:
            for _ in range(3):
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=1)
                queue = await channel.get_queue(
                    f"{rig.prefix}.partition.{_partition(community)}")
                got: asyncio.Queue[object] = asyncio.Queue()
                await queue.consume(got.put)
                try:
                    await asyncio.wait_for(got.get(), 5)
                except TimeoutError:
                    break        # dead-lettered: nothing left to deliver
                finally:
                    await channel.close()   # unacknowledged: returned to the queue
        finally:
            await connection.close()

    asyncio.run(poison())
    listed = wait_for(lambda: (out := rig.sct("deadletter", "list", "--reason", "poison"))
                      .stdout.count("poison") == 1 and out, 30, "the poison message listed")
    assert topic in listed.stdout and "delivery" in listed.stdout

    rig.start("sct-a", SCT_AMQP__STANDBY_DELAY_S="0")
    publish(rig.cluster.nodes[2].mqtt_port, [(topic, b'{"dim_pct": 400}')])
    refused = wait_for(lambda: (out := rig.sct("deadletter", "list", "--reason", "invalid"))
                       .stdout.count("invalid") >= 1 and out, 30, "the refusal listed")
    assert topic in refused.stdout and "dim_pct" in refused.stdout

    replayed = rig.sct("deadletter", "replay", "--reason", "poison")
    assert "replayed 1 dead letters" in replayed.stdout, replayed.stdout + replayed.stderr
    wait_for(lambda: rig.query(f"SELECT count(dim_pct) FROM streetlight WHERE device = "
                               f"'{lamp}' AND time = {now - 5000}ms"), 30,
             "the replayed reading in InfluxDB")
    after = rig.sct("deadletter", "list")
    assert "poison" not in after.stdout and "invalid" in after.stdout


def test_influxdb_down_for_20_s_nothing_is_acknowledged_early_and_all_lands_after(
        tmp_path: Path, rabbit_cluster: Cluster) -> None:
    (tmp_path / "influx").mkdir()
    (tmp_path / "rig").mkdir()
    influx = servers.start_influxd(tmp_path / "influx")
    rig = None
    try:
        rig = ClusterRig(tmp_path / "rig", rabbit_cluster, influx.port)
        rig.setup()
        rig.start("sct-a", SCT_AMQP__STANDBY_DELAY_S="0")
        influx.stop()
        load = Load(rabbit_cluster.nodes[1].mqtt_port, rig.registry, count=2_000, rate=2_000,
                    client_id=f"load-{rig.prefix}").start()
        load.wait_acknowledged(30)
        time.sleep(20)
        # Every reading is still on the broker, replicated: held unacknowledged by the
        # collector (up to the prefetch) or waiting in the queues.
        assert sum(rig.queue_depths().values()) == load.published
        assert rig.collectors["sct-a"].poll() is None
        held = sum(rig.queue_depths().values())
        influx = servers.start_influxd(tmp_path / "influx", port=influx.port)
        back = time.monotonic()
        wait_for(lambda: rig.landed(load) == load.published, 90, "every reading after")
        wait_for(lambda: sum(rig.queue_depths().values()) == 0, 30, "the queues to drain")
        print(f"\nFAILURE InfluxDB down 20 s | {load.published} | {rig.landed(load)} | none "
              f"({held} held on the broker through the outage, none acknowledged) | all "
              f"landed {time.monotonic() - back:.1f} s after InfluxDB came back")
    finally:
        if rig is not None:
            rig.stop_all()
        influx.stop()


def test_kill_the_node_leading_the_queues_loses_nothing(rig: ClusterRig) -> None:
    """Last: it leaves the session's cluster with two nodes. The setup ran on node 1, so
    node 1 leads every queue; the collectors are connected to it (first URL) and the
    devices publish to node 2."""
    rig.setup()
    leaders = rig.cluster.ctl("list_queues", "-q", "name", "leader", node=1)
    assert all("rabbit1@" in line for line in leaders.splitlines()
               if line.startswith(rig.prefix + ".partition"))
    rig.start("sct-a", SCT_AMQP__STANDBY_DELAY_S="5")
    rig.start("sct-b", SCT_AMQP__STANDBY_DELAY_S="5")
    load = Load(rig.cluster.nodes[1].mqtt_port, rig.registry, count=16_000, rate=2_000,
                client_id=f"load-{rig.prefix}").start()
    # Killed a quarter of the way through publishing, once readings are landing (the
    # publisher keeps its pace whatever the collectors do).
    wait_for(lambda: load.published >= load.count // 4 and rig.landed(load) > 0, 60,
             "the stream to be under way")
    rig.cluster.nodes[0].kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    assert load.published < load.count, "the node was killed after the stream ended"
    load.wait_acknowledged(90)
    wait_for(lambda: rig.landed(load) == load.published, 120, "every reading in InfluxDB")
    back = [rig.logged_at(i, "connected to RabbitMQ", killed_wall) for i in ("sct-a", "sct-b")]
    print(f"\nFAILURE kill -9 of the node leading every queue | {load.published} | "
          f"{rig.landed(load)} | none ({rig.counted('redelivered')} redeliveries overwrote "
          f"themselves) | collectors connected to another node "
          f"{max(b or 0 for b in back) - killed_wall:.2f} s after the kill; the backlog "
          f"landed {time.monotonic() - killed_at:.1f} s after")
    for instance in ("sct-a", "sct-b"):
        assert "lost" in rig.log(instance) and rig.collectors[instance].poll() is None
    time.sleep(1.0)
    assert rig.landed(load) == load.published
