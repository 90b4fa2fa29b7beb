"""End to end on the real servers: simulator -> Mosquitto -> collector -> InfluxDB.

The tests in this module share one collector and run in order: the simulated load, then
every kind of bad input, then a graceful stop.
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import orjson
import paho.mqtt.client as paho
import pytest
import yaml
from conftest import Stack, publish, wait_for
from corpus import INJECTIONS, hostile

from collector.deadletter import from_json
from devices import schema
from devices.payloads import KINDS

pytestmark = pytest.mark.integration

READINGS = 20_000


def published_counts(stdout: str) -> tuple[Counter[str], Counter[str]]:
    """Readings and events per kind from the simulator's closing table."""
    readings: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for kind, n_readings, n_events in re.findall(r"^(\w+)\s+(\d+)\s+(\d+)$", stdout, re.M):
        if kind in KINDS:
            readings[kind], events[kind] = int(n_readings), int(n_events)
    return readings, events


def points_per_kind(stack: Stack) -> Counter[str]:
    found: Counter[str] = Counter()
    for kind in KINDS:
        for series in stack.query(f'SELECT count(*) FROM "{kind}"'):
            found[kind] = max(v for v in series["values"][0][1:] if v is not None)
    return found


def events_per_kind(stack: Stack) -> Counter[str]:
    found: Counter[str] = Counter()
    for series in stack.query(f"SELECT count({schema.EVENT_COUNT_FIELD}) FROM {schema.EVENT} "
                              f"GROUP BY {schema.KIND}"):
        found[series["tags"][schema.KIND]] = series["values"][0][1]
    return found


def test_every_simulated_reading_lands_once_with_its_tags(stack: Stack) -> None:
    run = stack.sct("simulate", "--registry", str(stack.registry), "--count", str(READINGS),
                    "--rate", "4000", "--seed", "3", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    readings, events = published_counts(run.stdout)
    assert sum(readings.values()) == READINGS
    assert set(readings) == set(KINDS), "every kind publishes"

    wait_for(lambda: points_per_kind(stack) == readings and events_per_kind(stack) == events,
             90, "InfluxDB to hold exactly what the simulator published")

    registry = yaml.safe_load(stack.registry.read_text())
    communities = {c["id"]: c for c in registry["communities"]}
    expected = {}
    for device in registry["devices"]:
        community = communities[device["community"]]
        tags = {"city": community["city"], "district": community["district"],
                "community": community["id"]}
        if device["kind"] in schema.KIND_TAG:
            key = schema.KIND_TAG[device["kind"]]
            tags[key] = device["attrs"][key]
        expected[device["id"]] = tags
    for kind in KINDS:
        for series in stack.query(f'SELECT count(*) FROM "{kind}" GROUP BY *'):
            tags = dict(series["tags"])
            device = tags.pop(schema.DEVICE)
            assert tags == expected[device], f"{kind} {device}"


def _publish(stack: Stack, messages: list[tuple[str, bytes]]) -> None:
    publish(stack.mqtt_port, messages, "sct-test-sender")


def test_every_reject_reason_is_dead_lettered_and_nothing_reaches_influxdb(stack: Stack) -> None:
    registry = yaml.safe_load(stack.registry.read_text())
    light = next(d for d in registry["devices"] if d["kind"] == "streetlight")
    other_community = next(c["id"] for c in registry["communities"]
                           if c["id"] != light["community"])
    c, d = light["community"], light["id"]
    now = int(time.time() * 1000)
    mark = now - 3_600_000  # an hour ago: a time no simulated reading has
    topic = f"sc/{c}/streetlight/{d}/telemetry"

    def reading(i: int, **extra: object) -> bytes:
        return orjson.dumps({"ts": mark + i, "dim_pct": 50.0, **extra})

    bad = [
        ("bad_json", topic, b'{"ts": 1, "dim_pct": '),
        ("invalid", topic, reading(1, dim_pct=150)),
        ("unknown_device", f"sc/{c}/streetlight/no-such-lamp/telemetry", reading(2)),
        ("community_mismatch", f"sc/{other_community}/streetlight/{d}/telemetry", reading(3)),
        ("kind_mismatch", f"sc/{c}/waste_bin/{d}/telemetry", orjson.dumps(
            {"ts": mark + 4, "fill_pct": 10.0})),
        ("device_mismatch", topic, reading(5, device="someone-else")),
        ("ts_future", topic, orjson.dumps({"ts": now + 600_000, "dim_pct": 50.0})),
        ("ts_too_old", topic, orjson.dumps({"ts": now - 31 * 86_400_000, "dim_pct": 50.0})),
        ("too_large", topic, reading(8, pad="x" * 300_000)),
        ("bad_topic", f"sc/Not_An_Id/streetlight/{d}/telemetry", reading(9)),
    ]
    good_in_array = {"ts": mark + 10, "dim_pct": 30.0}
    array = orjson.dumps([good_in_array, {"ts": mark + 11, "dim_pct": -1}])
    _publish(stack, [(t, p) for _, t, p in bad] + [(topic, array)])

    expected = Counter(reason for reason, _, _ in bad) + Counter({"invalid": 1})

    def dead_letters() -> Counter[str]:
        run = stack.sct("deadletter", "list", "--json", "--limit", "1000")
        assert run.returncode == 0, run.stderr
        records = [orjson.loads(line) for line in run.stdout.splitlines()]
        return Counter(r["reason"] for r in records if r["received_ms"] >= now - 5_000)

    wait_for(lambda: dead_letters() == expected, 30, "every reject in the dead letters")
    # The good object of the array lands; nothing else from the marked hour does.
    wait_for(lambda: stack.query(f"SELECT dim_pct FROM streetlight WHERE device = '{d}' "
                                 f"AND time = {mark + 10}ms"), 30, "the good array item")
    marked = stack.query(f"SELECT count(*) FROM /.*/ WHERE time >= {mark}ms "
                         f"AND time <= {mark + 20}ms")
    # (the good reading also clears the lamp's device_offline alert: an `alert` point)
    assert [(s["name"], max(v for v in s["values"][0][1:] if v)) for s in marked
            if s["name"] != schema.ALERT] == [("streetlight", 1)]
    assert not stack.query("SHOW TAG VALUES WITH KEY = device WHERE device = 'no-such-lamp'")
    for outside in (now + 600_000, now - 31 * 86_400_000):
        assert not stack.query(f"SELECT * FROM streetlight WHERE time = {outside}ms")

    listing = stack.sct("deadletter", "list", "--reason", "invalid")
    assert "field 'dim_pct'" in listing.stdout and "less than or equal to 100" in listing.stdout
    assert stack.collector.poll() is None, "the collector keeps running"


def test_the_hostile_corpus_over_mqtt(stack: Stack) -> None:
    registry = yaml.safe_load(stack.registry.read_text())
    community = registry["communities"][0]["id"]
    ours = [d for d in registry["devices"] if d["community"] == community]
    lamp = next(d["id"] for d in ours if d["kind"] == "streetlight")
    door = next(d["id"] for d in ours if d["kind"] == "door")
    cases = [c for c in hostile(community, lamp, door, registry["communities"][1]["id"])
             # The broker itself drops a client that names a topic with control characters.
             if not any(ord(ch) < 32 for ch in c[1])]
    before = Counter(r.reason for r in _dead_letters(stack))
    _publish(stack, [(topic, payload) for _, topic, payload, _ in cases])

    expected = Counter()
    for _, _topic, payload, expect in cases:
        if expect != "accept":
            items = orjson.loads(payload) if expect == "bad_json" and payload.startswith(b"[1") \
                else None
            expected[expect] += len(items) if isinstance(items, list) else 1
    wait_for(lambda: Counter(r.reason for r in _dead_letters(stack)) - before == expected, 60,
             "every hostile message in the dead letters with its reason")
    codes = wait_for(lambda: [row[1] for s in stack.query(
        f"SELECT code FROM event WHERE device = '{lamp}' AND type = 'fault'")
        for row in s["values"]], 30, "the escaped fault codes")
    assert sorted(INJECTIONS) == sorted(codes), "stored exactly, nothing injected"
    measurements = {row[0] for s in stack.query("SHOW MEASUREMENTS") for row in s["values"]}
    assert measurements <= set(KINDS) | {schema.EVENT, schema.DEVICE_STATUS, schema.COLLECTOR,
                                         schema.ALERT, schema.COMMUNITY_INFO,
                                         schema.COMMUNITY_KPI, schema.CITY_KPI}
    tags = {row[1] for s in stack.query("SHOW TAG VALUES WITH KEY = city") for row in s["values"]}
    assert "evil" not in tags and stack.collector.poll() is None


def _dead_letters(stack: Stack) -> list:
    run = stack.sct("deadletter", "list", "--json", "--limit", "100000")
    return [from_json(line.encode()) for line in run.stdout.splitlines()]


def test_rejects_are_counted_by_reason_in_self_metrics(stack: Stack) -> None:
    registry = yaml.safe_load(stack.registry.read_text())
    light = next(d for d in registry["devices"] if d["kind"] == "streetlight")
    topic = f"sc/{light['community']}/streetlight/{light['id']}/telemetry"
    before = stack.latest_metrics()
    now = int(time.time() * 1000)
    _publish(stack, [(topic, orjson.dumps({"ts": now, "dim_pct": 1.0, "pad": "x" * 300_000})),
                     (topic, orjson.dumps({"ts": now + 900_000, "dim_pct": 1.0})),
                     (topic, orjson.dumps({"ts": now + 900_001, "dim_pct": 1.0}))])

    def grew(name: str) -> int:
        return stack.latest_metrics().get(name, 0) - before.get(name, 0)

    wait_for(lambda: grew("rejected_too_large") == 1 and grew("rejected_ts_future") == 2, 30,
             "self-metrics counting each refusal by its reason")
    assert grew("received") >= 3 and grew("rejected") >= 3


def test_deadletter_replay_after_the_registry_learns_a_device(stack: Stack) -> None:
    registry = yaml.safe_load(stack.registry.read_text())
    community = registry["communities"][0]["id"]
    now = int(time.time() * 1000)
    _publish(stack, [(f"sc/{community}/streetlight/late-lamp-1/telemetry",
                      orjson.dumps({"ts": now - 1000, "dim_pct": 70.0})),
                     (f"sc/{community}/streetlight/late-lamp-1/telemetry",
                      orjson.dumps({"dim_pct": 71.0})),   # no ts: keeps its receive time
                     (f"sc/{community}/streetlight/never-registered/telemetry",
                      orjson.dumps({"ts": now - 900, "dim_pct": 72.0}))])

    def listed(reason: str) -> list[dict]:
        run = stack.sct("deadletter", "list", "--json", "--reason", reason, "--limit", "1000")
        return [orjson.loads(line) for line in run.stdout.splitlines()]

    wait_for(lambda: sum("late-lamp-1" in r["topic"] for r in listed("unknown_device")) == 2
             and any("never-registered" in r["topic"] for r in listed("unknown_device")),
             30, "the unknown devices' readings in the dead letters")
    received = [r["received_ms"] for r in listed("unknown_device") if "late-lamp-1" in r["topic"]]
    registry["devices"].append({"id": "late-lamp-1", "kind": "streetlight",
                                "community": community, "attrs": {"rated_power_w": 100}})
    updated = stack.workdir / "registry-updated.yaml"
    updated.write_text(yaml.safe_dump(registry, allow_unicode=True))

    run = subprocess.run([sys.executable, "-m", "collector", "deadletter", "replay", "--reason",
                          "unknown_device"], env={**stack.env, "SCT_REGISTRY__PATH": str(updated)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "2 lines written" in run.stdout, run.stdout

    (series,) = stack.query("SELECT dim_pct FROM streetlight WHERE device = 'late-lamp-1'")
    assert [row[1] for row in series["values"]] == [70.0, 71.0]
    assert series["values"][1][0] == max(received), "a ts-less reading keeps its receive time"
    remaining = {r["topic"].split("/")[3] for r in listed("unknown_device")}
    assert "late-lamp-1" not in remaining
    assert "never-registered" in remaining, "what still fails stays, with its (new) reason"
    assert stack.collector.poll() is None


def test_alerts_are_raised_published_listed_and_cleared(stack: Stack) -> None:
    registry = yaml.safe_load(stack.registry.read_text())
    door = next(d for d in registry["devices"] if d["kind"] == "door")
    community = door["community"]
    heard: list[dict] = []
    listener = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="sct-test-operator")
    listener.on_message = lambda c, u, m: heard.append(orjson.loads(m.payload))
    listener.connect("127.0.0.1", stack.mqtt_port)
    listener.subscribe(f"sc/{community}/alert/#", qos=1)
    listener.loop_start()
    try:
        now = int(time.time() * 1000)
        topic = f"sc/{community}/door/{door['id']}"
        time.sleep(0.5)
        _publish(stack, [(f"{topic}/event", orjson.dumps({"type": "forced", "ts": now}))])
        wait_for(lambda: any(a["rule"] == "door_forced" and a["state"] == "raised"
                             for a in heard), 30, "the alert over MQTT")
        listed = wait_for(lambda: [line for line in stack.sct("alerts", "--json").stdout
                                   .splitlines() if "door_forced" in line], 30, "sct alerts")
        assert door["id"] in listed[0]
        _publish(stack, [(f"{topic}/telemetry",
                          orjson.dumps({"open": False, "battery_pct": 90.0, "ts": now + 1}))])
        wait_for(lambda: any(a["rule"] == "door_forced" and a["state"] == "cleared"
                             for a in heard), 30, "the alert cleared")
        states = wait_for(lambda: [row[1] for s in stack.query(
            f"SELECT state FROM alert WHERE device = '{door['id']}' AND rule = 'door_forced'")
            for row in s["values"]] == ["raised", "cleared"], 30, "both in InfluxDB")
        assert states
    finally:
        listener.loop_stop()
        listener.disconnect()


def test_injected_faults_are_detected_live(stack: Stack) -> None:
    truth = stack.workdir / "truth.csv"
    run = stack.sct("simulate", "--registry", str(stack.registry), "--duration", "20",
                    "--rate", "2000", "--faults", "door_forced,smoke_alarm,camera_video_loss",
                    "--truth", str(truth), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = list(csv.DictReader(truth.open()))
    assert {r["type"] for r in rows} == {"door_forced", "smoke_alarm", "camera_video_loss"}
    for row in rows:
        wait_for(lambda row=row: stack.query(
            f"SELECT state FROM alert WHERE device = '{row['device']}' "
            f"AND rule = '{row['type']}' AND state = 'raised'"), 30,
            f"{row['type']} on {row['device']}")


def test_history_since_lands_across_the_window(stack: Stack) -> None:
    started = int(time.time() * 1000)
    run = stack.sct("simulate", "--registry", str(stack.registry), "--since", "3h",
                    "--history-period", "1200", "--duration", "1", "--rate", "100", timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    readings, _ = published_counts(run.stdout)
    assert sum(readings.values()) > 3 * len(yaml.safe_load(stack.registry.read_text())
                                            ["devices"]) * 8 // 10, "about 9 per device"

    def spread() -> float:
        series = stack.query(f"SELECT count(fill_pct) FROM waste_bin WHERE time >= "
                             f"{started - 3 * 3_600_000 - 60_000}ms AND time < "
                             f"{started - 3_600_000}ms")
        return series[0]["values"][0][1] if series else 0

    wait_for(lambda: spread() > 0, 60, "history from hours ago in InfluxDB")


def test_sigterm_flushes_and_exits_zero(stack: Stack) -> None:
    stack.collector.send_signal(signal.SIGTERM)
    assert stack.collector.wait(30) == 0
    assert "stopped:" in stack.log()
