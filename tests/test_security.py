"""Nothing let in: ``sct security generate``'s files in a real Mosquitto, attacked.

The broker runs as root here (``--broker-user root``): pytest's temporary folders are
private to root, so Mosquitto's usual switch to its own account could not read them.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from conftest import wait_for

from devices.payloads import KINDS
from security import passwords
from simulators import servers
from simulators.registry_gen import generate, to_yaml

pytestmark = pytest.mark.integration


@dataclass
class Secured:
    out: Path
    registry: dict
    mqtt_port: int
    tls_port: int
    broker: servers.Server
    workdir: Path

    def sheet(self) -> dict[str, str]:
        rows: dict[str, str] = {}
        for path in (self.out / "installers").glob("*.csv"):
            with path.open(newline="") as f:
                rows.update((r["username"], r["password"]) for r in csv.DictReader(f))
        return rows

    def env_file(self, name: str) -> dict[str, str]:
        lines = (self.out / name).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line)

    def devices(self, n: int = 2) -> list[dict]:
        return self.registry["devices"][:n]


def sct(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    work = tmp_path_factory.mktemp("security")
    registry = work / "registry.yaml"
    registry.write_text(to_yaml(generate(2, seed=7)))
    mqtt_port, tls_port = servers.free_port(), servers.free_port()
    run = sct("security", "generate", "--registry", str(registry), "--out", str(work / "sec"),
              "--mqtt-port", str(mqtt_port), "--tls-port", str(tls_port),
              "--broker-user", "root")
    assert run.returncode == 0, run.stderr
    broker = servers.start_mosquitto_with(work / "sec" / "mosquitto.conf",
                                          [mqtt_port, tls_port], work)
    yield Secured(work / "sec", yaml.safe_load(registry.read_text()), mqtt_port, tls_port,
                  broker, work)
    broker.stop()


def topic(device: dict, channel: str = "telemetry") -> str:
    return f"sc/{device['community']}/{device['kind']}/{device['id']}/{channel}"


def connect(port: int, user: str | None = None, secret: str | None = None,
            tls: ssl.SSLContext | None = None, client_id: str = "") -> tuple[paho.Client, int]:
    """A connected (or refused) paho client and the CONNACK reason code."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    if user is not None:
        client.username_pw_set(user, secret)
    if tls is not None:
        client.tls_set_context(tls)
    done = threading.Event()
    result: list[int] = []

    def on_connect(c: paho.Client, u: object, flags: object, reason: paho.ReasonCode,
                   props: object) -> None:
        result.append(reason.value)
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return client, result[0]


def close(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


NOT_AUTHORISED = (5, 135)   # MQTT 3.1.1 "not authorised" and MQTT 5's 0x87


def test_our_hashes_are_mosquitto_passwd_hashes(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "alice", "s3cret"], check=True)
    hashed = passwords.read(pw)["alice"]
    assert passwords.verify("s3cret", hashed) and not passwords.verify("s3cres", hashed)
    mine = passwords.hash_secret("s3cret")
    assert mine.startswith("$7$101$") and passwords.verify("s3cret", mine)


def test_anonymous_and_wrong_secrets_are_refused(secured: Secured) -> None:
    a, b = secured.devices()
    secrets = secured.sheet()
    for user, secret in [(None, None), (a["id"], "wrong"), (a["id"], ""),
                         (a["id"], secrets[b["id"]]), ("nobody", secrets[a["id"]])]:
        client, code = connect(secured.mqtt_port, user, secret)
        close(client)
        assert code in NOT_AUTHORISED, (user, code)
    client, code = connect(secured.mqtt_port, a["id"], secrets[a["id"]])
    close(client)
    assert code == 0


def _collect(secured: Secured, user: str, filters: list[str],
             seconds: float) -> tuple[list[tuple[str, bytes]], list[int]]:
    """Subscribe as ``user``; what arrived within ``seconds`` and the SUBACK codes."""
    client, code = connect(secured.mqtt_port, user, secured.sheet().get(user)
                           or secured.env_file("operator.env")["MQTT_PASSWORD"])
    assert code == 0
    got: list[tuple[str, bytes]] = []
    granted: list[int] = []
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client.on_subscribe = lambda c, u, mid, codes, props: granted.extend(
        r.value for r in codes)
    for f in filters:
        client.subscribe(f, qos=1)
    time.sleep(seconds)
    close(client)
    return got, granted


def test_a_device_reads_nothing_and_cannot_publish_for_another(secured: Secured) -> None:
    a, b = secured.devices()
    secrets = secured.sheet()
    spy = threading.Thread(target=lambda: out.append(_collect(
        secured, a["id"], ["sc/#", topic(b), "#"], 3.0)))
    out: list[tuple[list[tuple[str, bytes]], list[int]]] = []
    spy.start()
    time.sleep(0.5)
    publisher, code = connect(secured.mqtt_port, b["id"], secrets[b["id"]])
    assert code == 0
    publisher.publish(topic(b), b'{"x": 1}', qos=1).wait_for_publish(5)
    close(publisher)
    spy.join()
    got, granted = out[0]
    assert got == [], "a device read another's reading"
    # Mosquitto 2.0 grants the subscription and then delivers nothing the ACL refuses.
    assert len(granted) == 3


@pytest.fixture(scope="module")
def collector(secured: Secured, influxdb: servers.Server) -> Iterator[dict[str, str]]:
    """The collector over TLS with its own credentials from collector.env."""
    # collector.env unchanged: its URL (mqtts://localhost:<tls port>), CA and credentials.
    env = dict(os.environ, **secured.env_file("collector.env"),
               SCT_INFLUX__URL=f"http://127.0.0.1:{influxdb.port}",
               SCT_INFLUX__DATABASE="secured", SCT_INFLUX__FLUSH_INTERVAL_S="0.2",
               SCT_REGISTRY__PATH=str(secured.workdir / "registry.yaml"),
               SCT_STORAGE__DIR=str(secured.workdir / "var"), SCT_METRICS__INTERVAL_S="1")
    assert env["SCT_MQTT__URL"] == f"mqtts://localhost:{secured.tls_port}"
    log = (secured.workdir / "collector.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "collector", "collect"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    text = secured.workdir / "collector.log"
    wait_for(lambda: "subscribed to" in text.read_text() or process.poll() is not None, 30,
             "the collector to subscribe over TLS")
    assert process.poll() is None, text.read_text()[-3000:]
    yield env
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def _query(env: dict[str, str], q: str) -> list[dict]:
    return servers.influx_query(env["SCT_INFLUX__URL"], "secured", q)


def _points_per_kind(env: dict[str, str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for kind in KINDS:
        for series in _query(env, f'SELECT count(*) FROM "{kind}"'):
            found[kind] = max(v for v in series["values"][0][1:] if v is not None)
    return found


def test_the_collector_works_over_tls_and_spoofed_readings_never_land(
        secured: Secured, collector: dict[str, str]) -> None:
    registry = secured.workdir / "registry.yaml"
    # Every device over TLS with its own secret, through the simulator.
    report = secured.workdir / "published.json"
    run = sct("simulate", "--registry", str(registry), "--count", "2000", "--rate", "1000",
              "--credentials", str(secured.out / "installers"), "--report", str(report),
              env=collector)
    assert run.returncode == 0, run.stderr[-2000:]
    published = Counter(json.loads(report.read_text())["readings"])
    assert sum(published.values()) == 2000
    wait_for(lambda: _points_per_kind(collector) == published, 60,
             "every simulated reading in InfluxDB")
    # Device A speaks for device B, on B's topic and on B's alert topic.
    a, b = [d for d in secured.registry["devices"] if d["kind"] == "waste_bin"][:2]
    secrets = secured.sheet()
    spoofer, code = connect(secured.tls_port, a["id"], secrets[a["id"]],
                            tls=ssl.create_default_context(cafile=secured.out / "ca.crt"))
    assert code == 0
    now = int(time.time() * 1000)
    spoofer.publish(topic(b), json.dumps({"ts": now, "fill_pct": 99.5}).encode(),
                    qos=1).wait_for_publish(5)
    spoofer.publish(f"sc/{b['community']}/alert/waste_bin/{b['id']}", b"fake",
                    qos=1).wait_for_publish(5)
    # A's own reading, sent after them on the same connection: the control.
    spoofer.publish(topic(a), json.dumps({"ts": now, "fill_pct": 12.5}).encode(),
                    qos=1).wait_for_publish(5)
    close(spoofer)
    wait_for(lambda: _query(collector, f"SELECT fill_pct FROM waste_bin WHERE device = "
                                       f"'{a['id']}' AND time = {now}ms"), 30, "A's reading")
    assert _query(collector, f"SELECT fill_pct FROM waste_bin WHERE device = '{b['id']}' "
                             f"AND time = {now}ms") == []
    dead = secured.workdir / "var" / "deadletters.jsonl"
    assert not dead.exists() or b["id"] not in dead.read_text(), \
        "the spoofed reading reached the collector"


def test_operators_get_alerts_and_only_alerts(secured: Secured,
                                              collector: dict[str, str]) -> None:
    door = next(d for d in secured.registry["devices"] if d["kind"] == "door")
    out: list[tuple[list[tuple[str, bytes]], list[int]]] = []
    watcher = threading.Thread(target=lambda: out.append(_collect(
        secured, "sct-operator", ["sc/#"], 6.0)))
    watcher.start()
    time.sleep(0.5)
    client, code = connect(secured.mqtt_port, door["id"], secured.sheet()[door["id"]])
    assert code == 0
    client.publish(topic(door, "event"), json.dumps(
        {"ts": int(time.time() * 1000), "type": "forced"}).encode(), qos=1).wait_for_publish(5)
    close(client)
    watcher.join()
    got, _ = out[0]
    assert got, "no alert reached the operators"
    assert all("/alert/" in t for t, _ in got), [t for t, _ in got]
    assert any(door["id"] in t for t, _ in got)


def test_a_client_trusting_another_ca_refuses_the_broker(secured: Secured,
                                                         tmp_path: Path) -> None:
    other = tmp_path / "other"
    run = sct("security", "generate", "--registry", str(secured.workdir / "registry.yaml"),
              "--out", str(other), "--broker-user", "root")
    assert run.returncode == 0, run.stderr
    a = secured.devices(1)[0]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.username_pw_set(a["id"], secured.sheet()[a["id"]])
    client.tls_set_context(ssl.create_default_context(cafile=other / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", secured.tls_port)
    # And the right CA, by a name the certificate does not carry, is refused too.
    right = ssl.create_default_context(cafile=secured.out / "ca.crt")
    with socket.create_connection(("127.0.0.1", secured.tls_port), 5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        right.wrap_socket(raw, server_hostname="broker.example")


def test_one_device_cannot_take_over_anothers_session(secured: Secured) -> None:
    a, b = secured.devices()
    secrets = secured.sheet()
    first, code = connect(secured.mqtt_port, a["id"], secrets[a["id"]], client_id=a["id"])
    assert code == 0
    lost = threading.Event()
    first.on_disconnect = lambda *args: lost.set()
    second, code = connect(secured.mqtt_port, b["id"], secrets[b["id"]], client_id=a["id"])
    assert code == 0
    assert not lost.wait(2), "B, with A's client id, threw A off the broker"
    close(second)
    close(first)


def test_rotating_one_secret_leaves_every_other_untouched(secured: Secured) -> None:
    a, b = secured.devices()
    before_passwd = passwords.read(secured.out / "passwd")
    before = secured.sheet()
    sheets = {p.name: p.read_text() for p in (secured.out / "installers").glob("*.csv")}
    run = sct("security", "generate", "--registry", str(secured.workdir / "registry.yaml"),
              "--out", str(secured.out), "--mqtt-port", str(secured.mqtt_port), "--tls-port",
              str(secured.tls_port), "--broker-user", "root", "--rotate", a["id"])
    assert run.returncode == 0, run.stderr
    assert "0 new secrets, 1 rotated" in run.stdout and "CA kept" in run.stdout
    after_passwd = passwords.read(secured.out / "passwd")
    after = secured.sheet()
    assert [u for u in after_passwd if after_passwd[u] != before_passwd[u]] == [a["id"]]
    assert [u for u in after if after[u] != before[u]] == [a["id"]]
    changed = [n for n, text in sheets.items()
               if (secured.out / "installers" / n).read_text() != text]
    assert changed == [f"{a['community']}.csv"]
    os.kill(secured.broker.process.pid, signal.SIGHUP)   # Mosquitto reloads its files
    time.sleep(1)
    for user, secret, ok in [(a["id"], before[a["id"]], False), (a["id"], after[a["id"]], True),
                             (b["id"], before[b["id"]], True)]:
        client, code = connect(secured.mqtt_port, user, secret)
        close(client)
        assert (code == 0) == ok, (user, ok, code)


def test_no_private_key_or_password_hash_is_committed() -> None:
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True,
                           cwd=Path(__file__).parent.parent, check=True).stdout.split()
    root = Path(__file__).parent.parent
    for name in files:
        path = root / name
        if not path.is_file() or path.suffix in (".png",):
            continue
        text = path.read_text(errors="replace")
        assert "PRIVATE KEY-----" not in text.replace('"PRIVATE KEY-----"', ""), name
        assert "$7$101$" not in text.replace('"$7$101$"', ""), name
