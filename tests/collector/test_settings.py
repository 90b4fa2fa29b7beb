from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector import settings
from collector.errors import ConfigError


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("SCT_")]:
        monkeypatch.delenv(name)
    s = settings.load()
    assert s.influx.database == "smart_community"
    assert s.validation.max_payload_bytes == 256 * 1024
    assert s.validation.max_age_days == 30 and s.validation.max_future_s == 300
    assert s.mqtt.topic_root == "sc"


def test_environment_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "sct.toml"
    toml.write_text('[influx]\nbatch_size = 10\napi = "v2"\norg = "o"\nbucket = "b"\n'
                    '[mqtt]\nurl = "mqtt://b:1884"\n')
    monkeypatch.setenv("SCT_INFLUX__TOKEN", "t")
    monkeypatch.setenv("SCT_INFLUX__BATCH_SIZE", "20")
    s = settings.load(toml)
    assert s.influx.batch_size == 20 and s.influx.api == "v2"
    assert (s.mqtt.host, s.mqtt.port) == ("b", 1884)


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCT_INFLUX__PASSWORD", "hunter2")
    assert "hunter2" not in repr(settings.load())


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("[influx]\nbatch_size = 0\n", {}, "influx.batch_size"),
    ("[mqtt]\nurl = \"http://x\"\n", {}, "mqtt.url"),
    ("[mqtt]\nspeed = 3\n", {}, "mqtt.speed"),
    ("", {"SCT_INFLUX__API": "v3"}, "SCT_INFLUX__API"),
    ("", {"SCT_VALIDATION__MAX_AGE_DAYS": "soon"}, "validation.max_age_days"),
    ("[influx]\napi = \"v2\"\nbucket = \"b\"\n", {}, "influx.org"),
    ("[influx]\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\n", {}, "SCT_INFLUX__TOKEN"),
])
def test_a_bad_value_names_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str,
                                   env: dict[str, str], named: str) -> None:
    path = tmp_path / "sct.toml"
    path.write_text(toml)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        settings.load(path)


def test_sct_collect_stops_at_start_up_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sct.toml"
    path.write_text("[influx]\nflush_interval_s = -1\n")
    run = subprocess.run([sys.executable, "-m", "collector", "collect", "--config", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "influx.flush_interval_s" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "collector", "collect", "--config",
                          str(tmp_path / "missing.toml")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "does not exist" in run.stderr


def test_a_bad_registry_stops_at_start_up(tmp_path: Path) -> None:
    registry = tmp_path / "r.yaml"
    registry.write_text("communities: []\ndevices:\n  - {id: x, kind: toaster, community: c}\n")
    run = subprocess.run([sys.executable, "-m", "collector", "collect"], capture_output=True,
                         text=True, timeout=60,
                         env={**__import__("os").environ, "SCT_REGISTRY__PATH": str(registry)})
    assert run.returncode == 2
    assert "unknown kind 'toaster'" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [
    ["collect"], ["deadletter", "list"], ["deadletter", "replay"], ["alerts"], ["kpi"],
    ["report", "--out", "x"], ["dashboards", "build", "--check"],
    ["simulate", "--registry", "r.yaml", "--count", "1"],
])
def test_every_command_names_the_bad_key_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """v2 without org/bucket/token: exit 2 and one line, before connecting anywhere."""
    env = {**__import__("os").environ, "SCT_INFLUX__API": "v2", "SCT_INFLUX__BUCKET": "b"}
    run = subprocess.run([sys.executable, "-m", "collector", *command], capture_output=True,
                         text=True, timeout=60, env=env, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "influx.org" in lines[0] and "SCT_INFLUX__ORG" in lines[0], \
        run.stderr
