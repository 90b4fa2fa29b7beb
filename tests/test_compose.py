"""docker-compose.yml cannot run here (no Docker engine), so it is checked statically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dashboards import DATASOURCE_UID, PROVISIONING

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_is_all_there() -> None:
    assert {"mosquitto", "influxdb", "grafana", "collector", "simulator"} <= set(SERVICES)
    for name in ("mosquitto", "influxdb", "grafana"):
        assert "healthcheck" in SERVICES[name], name


def test_every_image_build_context_and_mount_exists() -> None:
    volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = ROOT / (service["build"] if isinstance(service["build"], str)
                              else service["build"]["context"])
            assert (context / "Dockerfile").is_file(), name
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in volumes, f"{name}: undeclared volume {source}"
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_no_secret_in_the_file_and_every_variable_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|TOKEN|SECRET", key):
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"
    assert set(re.findall(r"\$\{([A-Z_]+)", text)) <= defined
    assert not re.search(r"(PASSWORD|TOKEN)=\S", example), ".env.example holds no secret"


def test_grafana_datasource_is_provisioned_with_the_fixed_uid_and_no_secret() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    (source,) = provisioned["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["secureJsonData"]["password"].startswith("$")
    grafana_env = SERVICES["grafana"]["environment"]
    for ref in ("INFLUXDB_USER", "INFLUXDB_PASSWORD"):
        assert ref in grafana_env


def test_the_broker_runs_the_generated_config_which_keeps_messages() -> None:
    from security.generate import Listeners, mosquitto_conf

    broker = SERVICES["mosquitto"]
    assert broker["command"][-1] == "/sct-security/mosquitto.conf"
    generator = SERVICES["security"]["command"]
    assert generator[generator.index("--out") + 1] == "/sct-security"
    assert "--data-dir" in generator and "--mqtt-port" in generator
    conf = mosquitto_conf(Listeners(mqtt_port=None, data_dir=Path("/mosquitto/data")),
                          Path("/sct-security"))
    assert "persistence true" in conf and "allow_anonymous false" in conf
    queued = int(re.search(r"^max_queued_messages (\d+)", conf, re.M).group(1))  # type: ignore[union-attr]
    assert queued >= 1_000_000
    # Nobody reaches the broker without TLS: the only published port is the TLS listener.
    assert broker["ports"] == ["127.0.0.1:8883:8883"]
    for name in ("collector", "simulator"):
        mounts = SERVICES[name]["volumes"]
        assert "sct-security:/sct-security:ro" in mounts, name
    assert SERVICES["simulator"]["environment"]["SCT_MQTT__URL"].startswith("mqtts://")
    assert "collector.env" in " ".join(SERVICES["collector"]["entrypoint"])


def test_the_cluster_profile_is_three_nodes_two_collectors_and_a_valid_configuration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from collector.settings import Settings

    cluster = {n for n, s in SERVICES.items() if "cluster" in s.get("profiles", [])}
    assert cluster == {"rabbit1", "rabbit2", "rabbit3", "cluster-setup", "collector-a",
                       "collector-b", "cluster-simulator"}
    conf = (ROOT / "deploy/rabbitmq/rabbitmq.conf").read_text()
    nodes = set(re.findall(r"classic_config\.nodes\.\d = rabbit@(\w+)", conf))
    assert nodes == {SERVICES[n]["hostname"] for n in ("rabbit1", "rabbit2", "rabbit3")}
    timeout_ms = int(re.search(r"^consumer_timeout = (\d+)", conf, re.M).group(1))  # type: ignore[union-attr]
    assert timeout_ms >= 6 * 3600 * 1000
    assert not re.search(r"pass|cookie", conf.split("\n", 2)[2], re.I), "no secret in it"
    instances = []
    for name in ("collector-a", "collector-b"):
        env = {k: str(v) for k, v in SERVICES[name]["environment"].items()}
        env = {k: ("secret" if v.startswith("${") else v) for k, v in env.items()}
        with monkeypatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            settings = Settings()
        assert settings.source.kind == "amqp" and len(settings.amqp.urls) == 3
        instances.append(settings.metrics.instance)
        assert sorted(settings.amqp.peers) == sorted(json.loads(env["SCT_AMQP__PEERS"]))
    assert sorted(instances) == sorted(json.loads(
        SERVICES["collector-a"]["environment"]["SCT_AMQP__PEERS"]))
    assert SERVICES["cluster-simulator"]["environment"]["SCT_MQTT__URL"].startswith("mqtt://rabbit")
