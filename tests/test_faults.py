"""Nothing lost: crashes and outages with the real processes, counted reading by reading.

Each test has its own Mosquitto, InfluxDB and collector, because it kills or restarts them.
Counts compare distinct (measurement, device, ts): every reading has its own timestamp
(see ``loadgen``). Each scenario appends its figures to ``fault-report.txt`` in pytest's
temporary root, and prints them (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from conftest import Stack, wait_for
from loadgen import Load
from rig import Rig

pytestmark = pytest.mark.integration


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.stop()


def report(tmp_path_factory: pytest.TempPathFactory, row: str) -> None:
    print(row)
    with (tmp_path_factory.getbasetemp() / "fault-report.txt").open("a") as out:
        out.write(row + "\n")


def spool_files(stack: Stack) -> list[Path]:
    return list((stack.workdir / "var" / "spool").glob("*.seg"))


def kill_9_with_messages_out(rig: Rig, load: Load) -> None:
    """SIGKILL the collector while the broker surely has messages out to it unacknowledged.

    Frozen first: on a busy machine the load can pause just as every message so far is
    acknowledged, and then there is nothing to redeliver and the test proves nothing. Frozen,
    it acknowledges nothing more while the broker goes on sending it the load; it is killed
    once messages the broker sent lie unread in its socket. (Waiting only for the broker to
    take more of the load was not enough: under load Mosquitto had taken 300 more and sent
    none of them yet, every earlier one was acknowledged, and nothing came back marked as
    sent before: 2 runs in 6 with a busy core, and once in CI.)
    """
    collector = rig.stack.collector
    collector.send_signal(signal.SIGSTOP)
    frozen_at = load.acknowledged
    wait_for(lambda: load.acknowledged > frozen_at + 100
             and unread_bytes(collector.pid, rig.broker.port) >= PUBLISH_BYTES, 30,
             "the broker to send the frozen collector more of the load")
    collector.send_signal(signal.SIGKILL)
    collector.wait()


#: More unread bytes than any control packet the broker sends a subscriber (PINGRESP is 2):
#: at least part of a PUBLISH.
PUBLISH_BYTES = 64


def unread_bytes(pid: int, port: int) -> int:
    """Bytes that process ``pid``'s TCP connections to loopback ``port`` have received and
    not read (the kernel's receive queues, /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:             # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                total += int(fields[4].split(":")[1], 16)   # tx_queue:rx_queue
    return total


def test_kill_9_mid_run_every_reading_lands_once(rig: Rig,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    load = Load(rig.broker.port, rig.stack.registry, count=50_000, rate=5_000).start()
    wait_for(lambda: rig.landed(load) > 5_000, 60, "the run to be under way")
    kill_9_with_messages_out(rig, load)
    at_kill = rig.landed(load)
    time.sleep(1.0)
    rig.stack.start_collector()
    load.wait_acknowledged(120)
    wait_for(lambda: rig.landed(load) == load.count, 120, "every reading to land")
    redelivered = wait_for(lambda: rig.stack.latest_metrics().get("redelivered"), 30,
                           "the restarted collector's metrics")
    assert rig.stack.collector.poll() is None
    report(tmp_path_factory, f"kill -9 collector | sent {load.count} | landed {load.count} "
           f"(at kill {at_kill}) | redelivered to the new collector {redelivered} "
           "(rewritten as the same points) | dead-lettered 0")


def test_kill_9_with_readings_without_ts_no_second_stamp(
        rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
    started_ms = int(time.time() * 1000)
    load = Load(rig.broker.port, rig.stack.registry, count=20_000, rate=4_000,
                with_ts=False).start()

    def stamped() -> int:
        return rig.points(load, f"time >= {started_ms}ms AND time <= now() + 1m")

    wait_for(lambda: stamped() > 4_000, 60, "the run to be under way")
    kill_9_with_messages_out(rig, load)
    rig.stack.start_collector()
    load.wait_acknowledged(120)
    wait_for(lambda: stamped() >= load.count, 120, "every reading to land")
    time.sleep(2)  # anything stamped twice would show up as more points than readings
    redelivered = wait_for(lambda: rig.stack.latest_metrics().get("redelivered"), 30,
                           "the restarted collector's metrics")
    assert stamped() == load.count
    report(tmp_path_factory, f"kill -9, readings without ts | sent {load.count} | landed "
           f"{load.count}, none stamped twice | redelivered {redelivered} | dead-lettered 0")


def test_influxd_down_30_s_spools_and_drains(tmp_path: Path,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    rig = Rig(tmp_path, SCT_METRICS__STALL_ALERT_S="10")
    try:
        load = Load(rig.broker.port, rig.stack.registry, count=40_000, rate=1_000).start()
        wait_for(lambda: rig.landed(load) > 2_000, 60, "the run to be under way")
        rig.influx.stop()
        time.sleep(30)
        spooled_files = len(spool_files(rig.stack))
        rig.restart_influx()
        load.wait_acknowledged(120)
        wait_for(lambda: rig.landed(load) == load.count, 120, "every reading to land")
        metrics = wait_for(lambda: (m := rig.stack.latest_metrics()).get("spooled")
                           and m.get("spool_lines") == 0 and m, 60, "the spool to drain")
        assert spooled_files >= 1 and spool_files(rig.stack) == []
        alerts = rig.stack.query("SELECT state, message FROM alert WHERE rule = 'write_stalled'")
        states = [row[1] for row in alerts[0]["values"]] if alerts else []
        assert states[:2] == ["raised", "cleared"], states
        report(tmp_path_factory, f"influxd down 30 s | sent {load.count} | landed {load.count} "
               f"| spooled {metrics['spooled']} replayed {metrics['replayed']} | spool empty "
               f"after | write_stalled raised and cleared | dead-lettered 0")
    finally:
        rig.stop()


def test_mosquitto_restart_mid_run(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
    load = Load(rig.broker.port, rig.stack.registry, count=20_000, rate=2_000).start()
    wait_for(lambda: rig.landed(load) > 2_000, 60, "the run to be under way")
    rig.broker.stop()
    time.sleep(2)
    rig.restart_broker()
    load.wait_acknowledged(120)
    wait_for(lambda: rig.landed(load) == load.count, 120, "every reading to land")
    assert rig.stack.log().count("subscribed to") >= 2
    report(tmp_path_factory, f"mosquitto restart | sent {load.count} | landed {load.count} | "
           f"collector reconnected | dead-lettered 0")


def test_influxdb_refusing_one_line(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
    stack = rig.stack
    # Make `value` a string field of `event` in this shard: a float value then conflicts.
    seed = Load(rig.broker.port, stack.registry, count=1, rate=1000)
    now = int(time.time() * 1000)
    stack.query("CREATE DATABASE smart_community")  # idempotent; the collector may not yet
    urllib.request.urlopen(urllib.request.Request(
        f"{stack.influx_url}/write?db=smart_community&precision=ms",
        data=f'event,kind=seed value="text",n=1i {now - 1000}'.encode(), method="POST"),
        timeout=10).close()
    community, _, device = next(d for d in seed.devices if d[1] == "smoke")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", rig.broker.port)
    client.loop_start()
    topic = f"sc/{community}/smoke/{device}"
    for i, event in enumerate([{"type": "test"}, {"type": "alarm", "value": 3.5},
                               {"type": "tamper"}]):
        client.publish(f"{topic}/event", orjson.dumps({**event, "ts": now + i}),
                       qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    kept = wait_for(lambda: [line for line in stack.sct("deadletter", "list", "--json",
                                                        "--reason", "influx_rejected")
                             .stdout.splitlines()], 30, "the refused line in the dead letters")
    record = orjson.loads(kept[0])
    assert len(kept) == 1 and "type=alarm" in record["payload"]
    assert "field type conflict" in record["detail"]
    landed = stack.query(f"SELECT count(n) FROM event WHERE device = '{device}' GROUP BY type")
    assert sorted(s["tags"]["type"] for s in landed) == ["tamper", "test"]
    report(tmp_path_factory, "influxdb refuses one line | sent 3 events | landed 2 | "
           f"dead-lettered 1 with the server's reason: {record['detail'][:80]}")


def test_backlog_of_500k_while_influxdb_is_down(rig: Rig,
                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    rig.influx.stop()
    load = Load(rig.broker.port, rig.stack.registry, count=500_000, rate=200_000,
                per_message=50).start()
    load.wait_acknowledged(180)
    wait_for(lambda: _spooled(rig.stack) >= load.count, 300, "the whole backlog in the spool",
             1.0)
    peak_kb = _peak_rss_kb(rig.stack.collector.pid)
    spool_mb = sum(p.stat().st_size for p in spool_files(rig.stack)) / 2**20
    rig.restart_influx()
    wait_for(lambda: rig.landed(load) == load.count, 300, "every reading to land", 1.0)
    wait_for(lambda: spool_files(rig.stack) == [], 60, "the spool to drain")
    report(tmp_path_factory, f"500k backlog, influxd down | sent {load.count} | landed "
           f"{load.count} | spool held {spool_mb:.0f} MB | collector peak RSS "
           f"{peak_kb / 1024:.0f} MB | dead-lettered 0")
    assert peak_kb < 512 * 1024, "memory stays bounded: the backlog is on disk"


def _spooled(stack: Stack) -> int:
    lines = [line for line in stack.log().splitlines() if " spooled=" in line]
    return int(lines[-1].split(" spooled=")[1].split()[0]) if lines else 0


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")



def test_sigterm_while_influxdb_is_down_spools_acknowledges_and_exits(
        rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
    rig.influx.stop()
    load = Load(rig.broker.port, rig.stack.registry, count=5_000, rate=5_000).start()
    load.wait_acknowledged(60)
    wait_for(lambda: _spooled(rig.stack) >= load.count, 60, "the collector to spool them")
    started = time.monotonic()
    rig.stack.collector.send_signal(signal.SIGTERM)
    assert rig.stack.collector.wait(60) == 0
    took = time.monotonic() - started
    assert spool_files(rig.stack), "what InfluxDB could not take is on disk"
    rig.restart_influx()
    rig.stack.start_collector()
    wait_for(lambda: rig.landed(load) == load.count, 120, "every reading to land")
    redelivered = rig.stack.latest_metrics().get("redelivered", 0)
    report(tmp_path_factory, f"SIGTERM with influxd down | sent {load.count} | exit 0 in "
           f"{took:.1f} s | landed {load.count} after restart | redelivered {redelivered} | "
           "dead-lettered 0")
