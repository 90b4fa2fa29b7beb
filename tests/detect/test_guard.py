"""Analytics never stop ingest: failing rules, bad registry attributes, damaged state files,
side jobs that fail."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.decode import Decoder
from collector.detect import rules
from collector.detect.alerts import Alert, AlertBook
from collector.detect.stage import DetectStage, _read_parts
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import DetectSettings, ValidationSettings
from collector.supervise import Supervisor
from devices.registry import from_mapping

REGISTRY = from_mapping({
    "communities": [{"id": "c1", "city": "xinji", "district": "xinji", "households": 600}],
    "devices": [
        {"id": "lamp", "kind": "streetlight", "community": "c1", "attrs": {"rated_power_w": 100}},
        {"id": "typo", "kind": "streetlight", "community": "c1", "attrs": {"rated_power_w": "n/a"}},
        {"id": "tank", "kind": "water_level", "community": "c1", "attrs": {"use": None}},
    ],
})
NOW = 1_795_000_000_000


def pipeline(book: AlertBook | None = None) -> tuple[Pipeline, DetectStage, Counters]:
    counters = Counters()
    stage = DetectStage(REGISTRY, DetectSettings(statistical=False), book or AlertBook())
    return (Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(REGISTRY), counters, stage),
            stage, counters)


def lamp(device: str, ts: int, **fields: Any) -> Inbound:
    return Inbound(f"sc/c1/streetlight/{device}/telemetry",
                   orjson.dumps({"ts": ts, **fields}), ts)


def test_a_failing_rule_is_counted_logged_once_and_the_reading_written(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(s: rules.Seen) -> Any:
        raise ZeroDivisionError("a bug in a rule")
        yield  # a generator, like every rule

    monkeypatch.setitem(rules.RULES, "streetlight", (broken, *rules.RULES["streetlight"]))
    run, stage, counters = pipeline()
    with caplog.at_level(logging.ERROR):
        first = run.process(lamp("lamp", NOW, on=False, lux=2.0))
        second = run.process(lamp("lamp", NOW + 1, on=False, lux=2.0))
    assert len(first.lines) == 2, "the reading and the lamp_dark alert the other rules raised"
    assert [a.rule for a in first.alerts] == ["lamp_dark"]
    assert len(second.lines) == 1 and not second.rejects
    assert stage.errors == {"broken": 2}
    assert caplog.text.count("broken failed on lamp") == 1, "logged once per rule and device"
    assert counters.accepted == 2 and counters.rejected == 0


def test_a_bad_registry_attribute_skips_only_what_needs_it() -> None:
    run, stage, _ = pipeline()
    assert stage.registry_problems == [
        "typo: attrs.rated_power_w 'n/a' is not a number of watts above 0",
        "tank: attrs.use None is not a word such as rain_tank or drainage_well"]
    done = run.process(lamp("typo", NOW, on=True, dim_pct=50.0, power_w=5.0, lux=2.0))
    assert len(done.lines) == 1 and not done.alerts, "written; lamp_power not judged"
    healthy = run.process(lamp("lamp", NOW, on=True, dim_pct=50.0, power_w=5.0, lux=2.0))
    assert [a.rule for a in healthy.alerts] == ["lamp_power"]
    for i, level in enumerate((10.0, 60.0)):
        tank = run.process(Inbound("sc/c1/water_level/tank/telemetry", orjson.dumps(
            {"ts": NOW + i * 600_000, "level_pct": level}), NOW + i * 600_000))
    assert tank.alerts and "tank filling" in tank.alerts[0].message
    assert not stage.errors


def test_a_moved_stamp_is_not_used_for_a_rate() -> None:
    seen = rules.Seen(REGISTRY.devices["tank"], NOW, 0.0, {"level_pct": 10.0}, None, {}, {},
                      lambda rule: False, DetectSettings(), {})
    assert rules._rate_per_hour(seen, "r", 10.0) is None
    seen.ts_ms, seen.moved = NOW + 1, True
    assert rules._rate_per_hour(seen, "r", 90.0) is None, "1 ms later: no 288,000 %/h rise"
    assert seen.state["r"][0] == NOW, "and nothing learnt from it"


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage", pickle.dumps([1, 2]),
                                     pickle.dumps({"version": 1, "state": {}}),
                                     pickle.dumps({"version": 2, "state": [], "detectors": {},
                                                   "seen": {}})])
def test_a_bad_snapshot_is_set_aside_and_the_stage_starts_afresh(tmp_path: Path,
                                                                 content: bytes) -> None:
    path = tmp_path / "detect-state.pickle"
    path.write_bytes(content)
    _, stage, _ = pipeline()
    stage.restore(path)
    assert not path.exists() and len(list(tmp_path.glob("detect-state.pickle.bad-*"))) == 1
    stage.snapshot(path)
    again = pipeline()[1]
    again.restore(path)
    assert path.exists(), "its own snapshot reads back"


@pytest.mark.parametrize("content", ["", "[{\"rule\": \"bin_full\", \"sta", "{}", "[1, 2]",
                                     '[{"rule": "x"}]'])
def test_a_bad_alerts_file_is_set_aside(tmp_path: Path, content: str) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(content)
    book = AlertBook(path)
    book.load()
    assert book.open == [] and not path.exists()
    assert list(tmp_path.glob("alerts.json.bad-*"))


def test_open_alerts_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    run = pipeline(AlertBook(path))[0]
    run.process(lamp("lamp", NOW, on=False, lux=2.0))
    run._detect.book.save()  # type: ignore[union-attr]
    book = AlertBook(path)
    book.load()
    assert [a.rule for a in book.open] == ["lamp_dark"]
    assert isinstance(book.open[0], Alert) and json.loads(path.read_text())


def test_the_supervisor_restarts_a_failing_job_with_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    calls = [0]

    async def sleep(s: float) -> None:
        sleeps.append(s)

    async def job() -> None:
        calls[0] += 1
        if calls[0] < 4:
            raise RuntimeError("KPI query failed")

    supervisor = Supervisor(min_s=1, max_s=3, sleep=sleep)
    with caplog.at_level(logging.ERROR):
        asyncio.run(supervisor.run("kpi", job))
    assert calls[0] == 4 and supervisor.failures == {"kpi": 3}
    assert sleeps == [1, 2, 3]
    assert caplog.text.count("side job 'kpi' failed") == 3


def test_rule_state_is_typed_entry_by_entry_when_read_back(tmp_path: Path) -> None:
    """A snapshot whose rule state has an entry of the wrong type keeps every other entry."""
    run, stage, _ = pipeline()
    for i in range(3):
        run.process(lamp("lamp", NOW + i * 60_000, on=True, dim_pct=50.0, energy_kwh=1.0 + i,
                         voltage_v=220.0 + i, lux=2.0))
    path = tmp_path / "detect-state.pickle"
    stage.snapshot(path)
    saved = _read_parts(path.read_bytes())[0]
    assert set(saved["state"]["lamp"]) == {"energy_kwh", "same:voltage_v"}
    saved["state"]["lamp"]["energy_kwh"] = "3.0"          # a string where a number belongs
    saved["state"]["lamp"]["from_an_older_version"] = 1
    path.write_bytes(pickle.dumps(saved))
    again = pipeline()[1]
    again.restore(path)
    assert again._state["lamp"] == {"same:voltage_v": (222.0, 1)}
    assert path.exists(), "the file itself was fine: not set aside"


def test_every_state_key_the_rules_write_has_a_type() -> None:
    """A rule that starts keeping a new key without typing it would lose it at every start."""
    full = from_mapping({
        "communities": [{"id": "c1", "city": "xinji", "district": "xinji", "households": 600}],
        "devices": [
            {"id": "bin", "kind": "waste_bin", "community": "c1", "attrs": {"category": "other"}},
            {"id": "inlet", "kind": "water_meter", "community": "c1", "attrs": {"role": "inlet"}},
            {"id": "tank", "kind": "water_level", "community": "c1", "attrs": {"use": "tank"}},
            {"id": "door", "kind": "door", "community": "c1"},
            {"id": "q", "kind": "water_quality", "community": "c1"},
        ]})
    stage = DetectStage(full, DetectSettings(statistical=False), AlertBook())
    run = Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(full), Counters(), stage)
    day = 86_400_000
    for i in range(4 * 24):
        ts = NOW - 4 * day + i * 3_600_000
        for topic, body in (
                ("sc/c1/waste_bin/bin/telemetry", {"fill_pct": float(i % 50), "temp_c": 20.0}),
                ("sc/c1/water_meter/inlet/telemetry", {"flow_m3h": 1.0 + i % 3,
                                                       "total_m3": float(i),
                                                       "pressure_kpa": 300.0, "temp_c": 15.0}),
                ("sc/c1/water_level/tank/telemetry", {"level_pct": 40.0}),
                ("sc/c1/water_quality/q/telemetry", {"ph": 7.0, "turbidity_ntu": 0.2}),
                ("sc/c1/door/door/event", {"type": "access", "result": "denied",
                                           "method": "card"})):
            run.process(Inbound(topic, orjson.dumps({"ts": ts, **body}), ts))
    assert not stage.errors
    for device, entries in stage._state.items():
        _, wrong = rules.checked_state(dict(entries))
        assert wrong == [], f"{device}: untyped or mistyped state keys {wrong}"
