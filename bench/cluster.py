"""Cluster mode throughput and memory, in one run on a real three-node RabbitMQ cluster.

For 1 and then 2 collectors, N full streetlight readings (eight fields, one reading a
message, as lamps send them) are queued through the MQTT plugin of node 2 into the
partitions while no collector runs; then the collectors start and the time until InfluxDB
counts every reading is measured. Against the two ceilings, each measured in the same run:
- the broker's own drain: a bare consumer (the collector's own AMQP consumer, nothing else)
  on every partition that acknowledges each message without looking at it (what the
  cluster can hand out);
- InfluxDB's own ingest: the same number of points, pre-encoded, posted in batches of 5,000
  by two writers.
Also: each node's memory idle, and per MQTT connection (2,000 idle device connections
opened to node 3). The machine is shared and its speed drifts: read the ratios.

    python -m bench.cluster [--readings 150000] [--out bench-cluster.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.stack import (
    TIMEOUT_S,
    CpuWatch,
    LandedInflux,
    Publisher,
    first_child,
    top_of_profile,
    under_py_spy,
)
from collector import mqttwire as wire
from collector.cluster.consumer import Consumer
from simulators import servers
from simulators.rabbitmq import Cluster, start_cluster
from simulators.registry_gen import generate, to_yaml

PARTITIONS = 8
CONNECTIONS = 2_000


def beam_pid(cluster: Cluster, index: int) -> int:
    """The Erlang VM of a node (the server process is a shell script, its parent)."""
    return first_child(cluster.nodes[index].server.process.pid)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reading(i: int, base_ms: int) -> bytes:
    return orjson.dumps({"ts": base_ms + i, "on": True, "dim_pct": 80.0,
                         "power_w": 96.0 + i % 7, "voltage_v": 229.5, "current_a": 0.42,
                         "energy_kwh": 1000.0 + i / 1000, "lux": 3.0, "temp_c": 21.5})


def queue(port: int, lamps: list[dict[str, str]], count: int, base_ms: int) -> None:
    publisher = Publisher(port, f"bench-{uuid.uuid4().hex[:6]}")
    packets = [publisher.packet(
        f"sc/{lamps[i % len(lamps)]['community']}/streetlight/{lamps[i % len(lamps)]['id']}"
        "/telemetry", reading(i, base_ms)) for i in range(count)]
    for at in range(0, count, 2000):
        publisher.send(packets[at:at + 2000])
        # The plugin confirms after the quorum commit; keep a bounded window in flight.
        publisher.wait_acked(max(0, at - 20_000))
    publisher.wait_acked(count)
    publisher.close()


def setup(env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "collector", "cluster", "setup"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode:
        raise SystemExit(f"setup failed: {done.stderr}")


def broker_drain(cluster: Cluster, prefix: str, count: int) -> float:
    """Messages/s a bare consumer takes from every partition: on the collector's own AMQP
    consumer (``collector/cluster/consumer.py``), each delivery counted and acknowledged (a
    multiple ack every 500 of a channel), nothing else done. (On aiormq, as before, the
    client was the bound: the collector on its own consumer came within a few per cent of
    that "ceiling".)"""
    async def drain() -> float:
        got = 0
        done = asyncio.Event()
        last: dict[int, int] = {}

        def on(channel: int, tag: int, redelivered: bool, key: str, body: bytes) -> None:
            nonlocal got
            got += 1
            last[channel] = tag
            if tag % 500 == 0:
                consumer.ack(channel, tag, True)
            if got >= count and not done.is_set():
                for open_channel, upto in last.items():
                    consumer.ack(open_channel, upto, True)
                done.set()

        consumer = Consumer(on)
        started = time.monotonic()
        await consumer.open(cluster.amqp_urls[0], "bench drain", 30)
        for n in range(PARTITIONS):
            await consumer.channel(f"{prefix}.partition.{n}", 2000, f"drain.{n}", 30)
        await asyncio.wait_for(done.wait(), 600)
        seconds = time.monotonic() - started
        consumer.close()
        return count / seconds
    return asyncio.run(drain())


def influx_ingest(url: str, database: str, count: int, base_ms: int) -> float:
    lines = [f"streetlight,city=c,district=d,community=c1,device=lamp-{i % 500} on=true,"
             f"dim_pct=80,power_w={96 + i % 7},voltage_v=229.5,current_a=0.42,"
             f"energy_kwh={1000 + i / 1000},lux=3,temp_c=21.5 {base_ms + i}".encode()
             for i in range(count)]
    batches = [b"\n".join(lines[at:at + 5000]) for at in range(0, count, 5000)]
    httpx.post(f"{url}/query", params={"q": f"CREATE DATABASE {database}"})

    async def post() -> float:
        async with httpx.AsyncClient(timeout=60) as client:
            todo = list(batches)

            async def writer() -> None:
                while todo:
                    body = todo.pop()
                    r = await client.post(f"{url}/write", params={
                        "db": database, "precision": "ms"}, content=body)
                    r.raise_for_status()
            started = time.monotonic()
            await asyncio.gather(writer(), writer())
            return count / (time.monotonic() - started)
    return asyncio.run(post())


def collectors_drain(work: Path, cluster: Cluster, influx: servers.Server,
                     registry: dict[str, Any], count: int, instances: list[str],
                     profile: Path | None = None) -> dict[str, Any]:
    """``profile``: the first collector runs under py-spy, its raw profile to this file."""
    prefix = "b" + uuid.uuid4().hex[:8]
    influx_url = f"http://127.0.0.1:{influx.port}"
    env = {**os.environ, "SCT_SOURCE__KIND": "amqp",
           "SCT_AMQP__URLS": json.dumps(cluster.amqp_urls), "SCT_AMQP__PREFIX": prefix,
           "SCT_AMQP__PARTITIONS": str(PARTITIONS), "SCT_AMQP__PEERS": json.dumps(instances),
           "SCT_AMQP__STANDBY_DELAY_S": "2", "SCT_INFLUX__URL": influx_url,
           "SCT_INFLUX__DATABASE": prefix, "SCT_REGISTRY__PATH": str(work / "registry.yaml")}
    setup(env)
    lamps = [d for d in registry["devices"] if d["kind"] == "streetlight"]
    base = int(time.time() * 1000) - 86_400_000
    queue(cluster.nodes[1].mqtt_port, lamps, count, base)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for name in instances:
        log = (work / f"{prefix}-{name}.log").open("wb")
        argv = [sys.executable, "-m", "collector", "collect"]
        if profile is not None and not processes:
            argv = under_py_spy(argv, profile)
        processes[name] = subprocess.Popen(
            argv, stdout=log,
            stderr=subprocess.STDOUT, env={**env, "SCT_METRICS__INSTANCE": name,
                                           "SCT_STORAGE__DIR": str(work / f"{prefix}-{name}")})
    pids = {name: first_child(p.pid) if profile is not None and i == 0 else p.pid
            for i, (name, p) in enumerate(processes.items())}
    pids.update({f"rabbit{i + 1}": beam_pid(cluster, i) for i in range(3)})
    pids["influxd"] = influx.process.pid
    # The clock starts once a collector is connected (its imports and registry are start-up,
    # not drain), and the count asks InfluxDB little while it ingests (LandedInflux).
    logs = [work / f"{prefix}-{name}.log" for name in instances]
    launched = time.monotonic()
    while not any("connected to RabbitMQ" in log.read_text(errors="replace") for log in logs):
        if time.monotonic() - launched > 60:
            raise SystemExit(f"no collector connected: see {logs}")
        time.sleep(0.01)
    watch = CpuWatch(pids)
    started = time.monotonic()
    landed_now = LandedInflux(influx_url, prefix, base, count)
    landed = landed_now()
    while landed < count and time.monotonic() - started < TIMEOUT_S:
        time.sleep(0.02)
        landed = landed_now()
    done = time.monotonic()
    cpu = watch.stop()
    if landed < count:
        landed = landed_now.total()
    seconds = done - started
    for name, process in processes.items():
        os.kill(pids[name], signal.SIGTERM)     # the collector, not py-spy around it
        process.wait(60)
    return {"collectors": len(instances), "readings": count, "landed": landed,
            "start_s": round(started - launched, 2),
            "seconds": round(seconds, 2), "readings_s": round(count / seconds),
            "cpu": cpu, "prefix": prefix}


def memory(cluster: Cluster) -> dict[str, float]:
    idle = {f"rabbit{i + 1}": round(rss_mb(beam_pid(cluster, i))) for i in range(3)}
    pid = beam_pid(cluster, 2)
    before = rss_mb(pid)
    sockets = []
    for i in range(CONNECTIONS):
        sock = socket.create_connection(("127.0.0.1", cluster.nodes[2].mqtt_port))
        sock.sendall(wire.connect(f"bench-dev-{i}", 600, True))
        sockets.append(sock)
    for sock in sockets:
        sock.settimeout(30)
        sock.recv(4)                                    # CONNACK
    time.sleep(2.0)
    after = rss_mb(pid)
    for sock in sockets:
        sock.close()
    return {"node_idle_mb": idle, "per_connection_kb": round((after - before) * 1024 /
                                                              CONNECTIONS, 1),
            "connections": CONNECTIONS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=150_000)
    parser.add_argument("--out", type=Path, default=Path("bench-cluster.json"))
    parser.add_argument("--profile", type=Path, help="run the one-collector drain's collector "
                        "under py-spy, its raw profile to this file, and print its top entries "
                        "(its CPU figure then includes py-spy's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sct-bench-cluster-") as tmp:
        work = Path(tmp)
        registry = generate(20, seed=1)
        (work / "registry.yaml").write_text(to_yaml(registry))
        print("starting 3 RabbitMQ nodes and InfluxDB ...", flush=True)
        cluster = start_cluster(work / "rabbitmq")
        (work / "influx").mkdir()
        influx = servers.start_influxd(work / "influx")
        try:
            mem = memory(cluster)
            runs = [collectors_drain(work, cluster, influx, registry, args.readings, names,
                                     args.profile if len(names) == 1 else None)
                    for names in (["sct-a"], ["sct-a", "sct-b"])]
            # The broker's own drain, on a backlog queued the same way.
            env = {**os.environ, "SCT_AMQP__URLS": json.dumps(
                cluster.amqp_urls), "SCT_AMQP__PARTITIONS": str(PARTITIONS),
                   "SCT_REGISTRY__PATH": str(work / "registry.yaml")}
            prefix = "c" + uuid.uuid4().hex[:8]
            setup({**env, "SCT_AMQP__PREFIX": prefix})
            lamps = [d for d in registry["devices"] if d["kind"] == "streetlight"]
            queue(cluster.nodes[1].mqtt_port, lamps, args.readings, 0)
            broker = broker_drain(cluster, prefix, args.readings)
            ingest = influx_ingest(f"http://127.0.0.1:{influx.port}", "ceiling",
                                   args.readings, int(time.time() * 1000) - 86_400_000)
        finally:
            influx.stop()
            cluster.stop()
    result = {"memory": mem, "runs": runs, "broker_drain_msg_s": round(broker),
              "influx_ingest_points_s": round(ingest)}
    print(f"\nceilings: broker's own drain {broker:,.0f} msg/s; InfluxDB's own ingest "
          f"{ingest:,.0f} points/s (8 fields)")
    print(f"{'collectors':>10}{'readings/s':>12}{'÷ broker':>10}{'÷ InfluxDB':>11}  CPU (cores)")
    for r in runs:
        cpu = " ".join(f"{k}={v:.2f}" for k, v in r["cpu"].items())
        print(f"{r['collectors']:>10}{r['readings_s']:>12,}{r['readings_s'] / broker:>10.2f}"
              f"{r['readings_s'] / ingest:>11.2f}  {cpu}")
    print(f"memory: nodes idle {mem['node_idle_mb']} MB; "
          f"{mem['per_connection_kb']} KB per idle MQTT connection ({CONNECTIONS} opened)")
    if args.profile:
        print("profile of the one-collector drain, own samples:")
        for name, share in top_of_profile(args.profile, 20):
            print(f"  {share:5.1f} %  {name}")
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
