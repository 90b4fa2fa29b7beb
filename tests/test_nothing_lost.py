"""Nothing lost for real: what devices and disks really do, against the real servers.

One test per row of issue 12's table. Each test has a broker and a collector of its own
(its own database, client id and storage folder) on the session's InfluxDB, or all servers
of its own when it stops them; none reads another's leftovers (a shared broker would hand a
new collector every other test's retained status messages).
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import Stack, publish, start_stack, wait_for
from loadgen import Load
from rig import Rig, landed

from collector.sink.spool import HEADER, Spool, encode_lines
from simulators import servers
from simulators.rabbitmq import start_rabbitmq
from simulators.registry_gen import generate

pytestmark = pytest.mark.integration




def count(stack: Stack, measurement: str, device: str, field: str) -> int:
    series = stack.query(f'SELECT count("{field}") FROM "{measurement}" '
                         f"WHERE device = '{device}'", missing_ok=True)
    return int(series[0]["values"][0][1]) if series else 0


def devices(stack: Stack, kind: str) -> list[tuple[str, str]]:
    import yaml
    data = yaml.safe_load(stack.registry.read_text())
    return [(d["community"], d["id"]) for d in data["devices"] if d["kind"] == kind]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[servers.Server]:
    (tmp_path / "broker").mkdir()
    server = servers.start_mosquitto(tmp_path / "broker")
    yield server
    server.stop()


@pytest.fixture
def own(request: pytest.FixtureRequest, tmp_path: Path, broker: servers.Server,
        influxdb: servers.Server) -> Iterator[Stack]:
    name = request.node.name.replace("test_", "")[:40].replace("[", "_").rstrip("]")
    (tmp_path / "stack").mkdir()
    stack = start_stack(tmp_path / "stack", broker, influxdb, f"lost_{name}", communities=2,
                        client_id=f"sct-{name}")
    yield stack
    if stack.collector.poll() is None:
        stack.collector.kill()
        stack.collector.wait()


def test_readings_without_ts_queued_while_the_collector_was_away_all_land(own: Stack) -> None:
    """Rows 1-3: 200 from one clockless device, 3,000 in a burst from another, an array."""
    (c1, lamp), (c2, bin_) = devices(own, "streetlight")[0], devices(own, "waste_bin")[0]
    own.stop_collector()
    publish(own.mqtt_port, [(f"sc/{c1}/streetlight/{lamp}/telemetry",
                             orjson.dumps({"dim_pct": float(i % 100)})) for i in range(200)])
    publish(own.mqtt_port, [(f"sc/{c2}/waste_bin/{bin_}/telemetry",
                             orjson.dumps({"seq": i, "fill_pct": float(i % 100)}))
                            for i in range(3_000)])
    publish(own.mqtt_port, [(f"sc/{c1}/streetlight/{lamp}/telemetry",
                             orjson.dumps([{"dim_pct": 1.0}, {"dim_pct": 2.0}, {"dim_pct": 3.0}]))])
    own.start_collector()
    wait_for(lambda: count(own, "streetlight", lamp, "dim_pct") == 200
             and count(own, "waste_bin", bin_, "fill_pct") == 3_000, 90,
             "200 + 3,000 readings without ts, each its own point")
    run = own.sct("deadletter", "list", "--json", "--reason", "invalid")
    records = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert [r["detail"] for r in records] == ["an array item needs ts"] * 3
    wait_for(lambda: own.latest_metrics().get("accepted", 0) >= 3_200, 30,
             "the collector's count")
    time.sleep(1.5)   # anything written twice or late would show now
    assert own.latest_metrics()["accepted"] == 3_200, "counted once each, never negative"
    assert count(own, "streetlight", lamp, "dim_pct") == 200


def test_the_same_heartbeat_twice_across_a_kill_is_two_readings(own: Stack) -> None:
    """Row 4: both copies in flight (received, not yet acknowledged) when the collector dies;
    both come back with DUP; each keeps its own stamp."""
    c, door = devices(own, "door")[0]
    own.stop_collector()
    own.env.update(SCT_MQTT__STALL_FLUSH_MS="60000", SCT_INFLUX__FLUSH_INTERVAL_S="60")
    own.start_collector()            # holds what it receives for a minute, unacknowledged
    beat = (f"sc/{c}/door/{door}/telemetry", b'{"open": false, "battery_pct": 88.0}')
    journal = own.workdir / "var" / "stamps"

    def stamps_given() -> int:
        return sum(len(p.read_text().splitlines()) for p in journal.glob("*.log"))

    publish(own.mqtt_port, [beat])
    wait_for(lambda: stamps_given() == 1, 20, "the first heartbeat received and stamped")
    time.sleep(3)
    publish(own.mqtt_port, [beat])
    wait_for(lambda: stamps_given() == 2, 20, "the second heartbeat received and stamped")
    assert count(own, "door", door, "battery_pct") == 0, "nothing written yet"
    own.collector.send_signal(signal.SIGKILL)
    own.collector.wait()
    own.env.update(SCT_MQTT__STALL_FLUSH_MS="3", SCT_INFLUX__FLUSH_INTERVAL_S="0.2")
    own.start_collector()
    wait_for(lambda: count(own, "door", door, "battery_pct") >= 2, 30, "both heartbeats")
    time.sleep(1)
    (series,) = own.query(f"SELECT battery_pct FROM door WHERE device = '{door}'")
    times = [row[0] for row in series["values"]]
    assert len(times) == 2 and times[1] - times[0] >= 2_500, times
    wait_for(lambda: own.latest_metrics().get("redelivered", 0) >= 2, 30,
             "both counted as redelivered (DUP)")


def _attrs_registry() -> dict:
    data = generate(2, seed=7)
    lamp = next(d for d in data["devices"] if d["kind"] == "streetlight")
    lamp["attrs"]["rated_power_w"] = "n/a"
    level = next(d for d in data["devices"] if d["kind"] == "water_level")
    level["attrs"]["use"] = None
    return data


def test_a_registry_typo_skips_a_rule_not_the_readings(
        tmp_path: Path, broker: servers.Server, influxdb: servers.Server) -> None:
    """Row 5: rated_power_w 'n/a', use: null: readings stored, registry_problem raised."""
    data = _attrs_registry()
    (tmp_path / "stack").mkdir()
    stack = start_stack(tmp_path / "stack", broker, influxdb, "lost_attrs",
                        client_id="sct-attrs", registry_data=data)
    try:
        lamp = next(d for d in data["devices"] if d["kind"] == "streetlight")
        level = next(d for d in data["devices"] if d["kind"] == "water_level")
        now = int(time.time() * 1000)
        publish(stack.mqtt_port, [
            (f"sc/{lamp['community']}/streetlight/{lamp['id']}/telemetry", orjson.dumps(
                {"ts": now - 1000 + i, "on": True, "dim_pct": 50.0, "power_w": 49.0,
                 "lux": 3.0}))
            for i in range(5)] + [
            (f"sc/{level['community']}/water_level/{level['id']}/telemetry", orjson.dumps(
                {"ts": now - 600_000 * (3 - i), "level_pct": 10.0 + 30 * i}))
            for i in range(3)])
        wait_for(lambda: count(stack, "streetlight", lamp["id"], "dim_pct") == 5
                 and count(stack, "water_level", level["id"], "level_pct") == 3, 30,
                 "every reading of both devices")
        raised = wait_for(lambda: stack.query(
            "SELECT state, message FROM alert WHERE rule = 'registry_problem'"), 30,
            "the registry_problem alert")
        message = raised[0]["values"][0][2]
        assert "rated_power_w 'n/a'" in message and "use None" in message
        level_alert = wait_for(lambda: stack.query(
            f"SELECT message FROM alert WHERE device = '{level['id']}' "
            "AND rule = 'level_rising_fast'"), 30, "the level rule still runs")
        # The unusable use left out: the message says "tank" (水池; in Chinese by default).
        assert "水池水位每小时上涨" in level_alert[0]["values"][0][1]
        metrics = stack.latest_metrics()
        assert metrics["accepted"] == 8 and metrics.get("rejected", 0) == 0
        listed = stack.sct("deadletter", "list", "--json")
        assert listed.stdout.strip() == "", "nothing dead-lettered"
    finally:
        stack.stop_collector()


def _lines(device: str, community: str, base_ms: int, n: int) -> list[bytes]:
    return [f"streetlight,city=baoding,community={community},device={device},"
            f"district=x dim_pct={i}.0 {base_ms + i}".encode() for i in range(n)]


def test_damaged_files_on_disk_it_starts_and_keeps_what_it_can(own: Stack) -> None:
    """Rows 6-8: torn alerts.json, a pickle of the wrong shape, stray files, a truncated
    commit, a flipped byte in a spool record, a torn dead-letter line."""
    c, lamp = devices(own, "streetlight")[0]
    own.stop_collector()
    var = own.workdir / "var"
    (var / "alerts.json").write_text('[{"rule": "bin_full", "sta')
    (var / "detect-state.pickle").write_bytes(pickle.dumps({"state": [1, 2, 3]}))
    (var / "stamps" / "notes.txt").write_text("stray")
    spool_dir = var / "spool"
    spool = Spool(spool_dir, 10**8)
    spool.open()
    base = int(time.time() * 1000) - 7_200_000
    batches = [_lines(lamp, c, base + 100 * b, 4) for b in range(3)]
    for lines in batches:
        spool.append(encode_lines(lines), 4)
    (segment,) = spool_dir.glob("*.seg")
    data = bytearray(segment.read_bytes())
    second = HEADER.size + len(encode_lines(batches[0]))
    data[second + HEADER.size + 20] ^= 0xFF                    # one flipped byte, record 2
    segment.write_bytes(bytes(data))
    (spool_dir / "commit").write_text('{"segment": 1, "off')  # truncated
    (spool_dir / "README").write_text("stray")
    deadletters = var / "deadletters.jsonl"
    deadletters.write_bytes(b'{"received": "x", "received_ms": 1, "topic": "sc/a/b/c/telemetry",'
                            b' "reason": "bad_json", "detail": "d", "payload": "x"}\n'
                            b'{"received": "2026-')          # torn by a crash mid-append

    own.start_collector()
    wait_for(lambda: count(own, "streetlight", lamp, "dim_pct") == 8, 30,
             "the two intact spool records (8 readings) replayed")
    log = own.log()
    for said in ("alerts.json is unreadable", "detect-state.pickle is unreadable",
                 "fail their checksum", "commit is unreadable", "notes.txt is not one of ours",
                 "README is not one of ours", "torn line"):
        assert said in log, said
    assert f"device={lamp}" in log.split("fail their checksum")[1][:2000], \
        "the readings it cannot recover are named"
    assert list(var.glob("alerts.json.bad-*")) and list(var.glob("detect-state.pickle.bad-*"))
    assert list(spool_dir.glob("damaged-*.bin"))

    publish(own.mqtt_port, [(f"sc/{c}/streetlight/{lamp}/telemetry", b"{not json")])
    listed = wait_for(lambda: [orjson.loads(line) for line in own.sct(
        "deadletter", "list", "--json").stdout.splitlines()
        if "not json" in line], 30, "the new refusal listed after the torn line")
    assert listed[0]["reason"] == "bad_json"
    run = own.sct("deadletter", "list", "--json")
    assert len(run.stdout.splitlines()) == 2 and "1 unreadable" in run.stderr
    assert own.collector.poll() is None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that fills up (the machine's root lets tests mount one)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs for the disk-full test: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_influxdb_is_down_holds_and_recovers(
        tmp_path: Path, small_disk: Path) -> None:
    """Row 9: the spool cannot be written; the collector keeps running, acknowledges
    nothing more, raises storage_full, and goes on when space returns."""
    rig = Rig(tmp_path / "rig", SCT_STORAGE__DIR=str(small_disk / "var"),
              SCT_INFLUX__RETRY_MAX_S="2")
    try:
        load = Load(rig.broker.port, rig.stack.registry, count=6_000, rate=1_000).start()
        wait_for(lambda: rig.landed(load) > 500, 60, "the run to be under way")
        rig.influx.stop()
        with (small_disk / "var" / "deadletters.jsonl").open("ab") as torn:
            torn.write(b'{"received": "20')      # a crash mid-append, found at the restart
        filler = small_disk / "filler"
        with filler.open("wb", buffering=0) as out:       # fill the disk
            try:
                while True:
                    out.write(b"\0" * 65536)
            except OSError:
                pass
        wait_for(lambda: "neither InfluxDB nor the spool can take" in rig.stack.log(), 60,
                 "the collector to find the disk full")
        wait_for(lambda: "alert storage_full raised" in rig.stack.log(), 30, "storage_full")
        time.sleep(3)
        assert rig.stack.collector.poll() is None, rig.stack.log()[-3000:]
        rig.stack.collector.send_signal(signal.SIGKILL)   # and it starts on a full disk
        rig.stack.collector.wait()
        rig.stack.start_collector()
        wait_for(lambda: "end in a torn line" in rig.stack.log()
                 or "refused messages will be held" in rig.stack.log(), 30,
                 "the torn dead-letter tail found (closed off, or held when it cannot be)")
        wait_for(lambda: rig.stack.log().count("alert storage_full raised") >= 2, 30,
                 "the restarted collector to find the disk full too")
        assert rig.stack.collector.poll() is None, rig.stack.log()[-3000:]
        filler.unlink()
        rig.restart_influx()
        load.wait_acknowledged(120)
        wait_for(lambda: rig.landed(load) == load.count, 180, "every reading to land")
        def states() -> list[str]:
            return [row[1] for s in rig.stack.query(
                "SELECT state FROM alert WHERE rule = 'storage_full'") for row in s["values"]]

        wait_for(lambda: states()[-1:] == ["cleared"], 60, "storage_full cleared")
        assert states()[0] == "raised" and len(states()) % 2 == 0, states()
        assert rig.stack.collector.poll() is None
    finally:
        rig.stop()


def test_a_broker_at_its_stock_inflight_window_drains_at_its_pace(tmp_path: Path) -> None:
    """Row 11 on Mosquitto: stock max_inflight_messages 20, 4,000 readings queued.

    Debian's Mosquitto 2.0 sent this backlog in bursts of 20, then hundreds, then the rest,
    so it does not hold the collector to 20; the window-limited case (a broker that sends
    exactly N and waits) is proven on an in-memory broker in tests/collector/test_source.py.
    """
    rig = Rig(tmp_path, max_inflight=20)
    try:
        rig.stack.stop_collector()
        load = Load(rig.broker.port, rig.stack.registry, count=4_000, rate=20_000).start()
        load.wait_acknowledged(60)
        started = time.monotonic()
        rig.stack.start_collector()
        wait_for(lambda: rig.landed(load) == load.count, 90, "the backlog to drain")
        print(f"4,000 readings through Mosquitto at max_inflight_messages 20 in "
              f"{time.monotonic() - started:.1f} s")
        metrics = wait_for(lambda: (m := rig.stack.latest_metrics()).get("inflight_peak")
                           and m, 30, "the in-flight figures in the self-metrics")
        assert metrics["inflight_peak"] >= 20
    finally:
        rig.stop()


def test_rabbitmq_at_its_default_prefetch_drains_at_its_pace(
        tmp_path: Path, influxdb: servers.Server) -> None:
    """Row 11 on RabbitMQ's MQTT plugin (Debian's rabbitmq-server 3.10, prefetch 10, left
    at its default): 4,000 readings queued for the collector's session. Before: about 8
    readings/s (960 of 4,000 in two minutes), each batch waiting for its 1 s age."""
    (tmp_path / "rabbit").mkdir()
    rabbit = start_rabbitmq(tmp_path / "rabbit")
    try:
        (tmp_path / "stack").mkdir()
        stack = start_stack(tmp_path / "stack", rabbit, influxdb, "lost_rabbitmq",
                            communities=2, client_id="sct-rabbit",
                            SCT_INFLUX__FLUSH_INTERVAL_S="1.0")
        stack.stop_collector()
        load = Load(rabbit.port, stack.registry, count=4_000, rate=20_000,
                    client_id="sct-test-load-rabbit").start()
        load.wait_acknowledged(120)
        started = time.monotonic()
        stack.start_collector()

        wait_for(lambda: landed(stack, load) == load.count, 120, "the backlog through RabbitMQ")
        took = time.monotonic() - started
        print(f"4,000 readings through RabbitMQ's MQTT plugin (prefetch 10) in {took:.1f} s "
              f"= {4_000 / took:.0f}/s")
        metrics = wait_for(lambda: (m := stack.latest_metrics()).get("inflight_window")
                           and m, 30, "the learnt window in the self-metrics")
        assert metrics["inflight_window"] == 10
        assert "mqtt.prefetch" in stack.log(), "the warning names the setting to raise"
        stack.stop_collector()
    finally:
        rabbit.stop(30)
