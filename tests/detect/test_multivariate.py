"""The multivariate candidate (issue 14): T² over a device's fields, budget threshold."""

from __future__ import annotations

import io
import os
import pickle
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from collector.detect.alerts import Alert
from collector.detect.daily import Daily, for_device
from collector.detect.multivariate import MAX_WARMUP, T2, Tail, budget, plain_for_device
from collector.detect.replay import readings_per_day, replay_csv


def _normal(rng: np.random.Generator, n: int) -> np.ndarray:
    # Two strongly correlated fields (pressure and flow of one pipe) and a third apart.
    base = rng.normal(0, 1, n)
    return np.column_stack([50 + 5 * base + rng.normal(0, 0.5, n),
                            20 + 2 * base + rng.normal(0, 0.2, n),
                            rng.normal(7, 0.1, n)])


def test_normal_data_stays_quiet_and_a_broken_correlation_alarms() -> None:
    rng = np.random.default_rng(3)
    det = T2(3, budget(1 / 100, 1440), warmup=300)
    normal = _normal(rng, 5000)
    flags = [det.update(row) >= 1.0 for row in normal]
    assert sum(flags[300:]) <= 2            # the budget: about none in 3.3 days of minutes
    # Pressure up by one of its own standard deviations while flow stays: small per
    # field, far outside the fields' joint distribution.
    odd = _normal(rng, 50)
    odd[:, 0] += 5
    assert sum(det.update(row) >= 1.0 for row in odd) >= 45


def test_the_warm_up_is_silent_and_memory_does_not_grow() -> None:
    rng = np.random.default_rng(4)
    det = T2(3, 1e-5, warmup=300)
    scores = [det.update(row) for row in _normal(rng, 300)]
    assert scores == [0.0] * 300
    before = sum(np.asarray(getattr(det, name)).nbytes for name in ("_mean", "_cov", "_inv"))
    for row in _normal(rng, 2000):
        det.update(row)
    after = sum(np.asarray(getattr(det, name)).nbytes for name in ("_mean", "_cov", "_inv"))
    assert after == before


def test_the_budget_sets_the_threshold() -> None:
    assert budget(1 / 100, 1440) == 1 / 144_000      # one in 100 days of minutes
    rng = np.random.default_rng(9)
    strict, loose = T2(3, 1e-6), T2(3, 1e-2)
    for row in _normal(rng, 2000):
        strict.update(row)
        loose.update(row)
    assert strict.limit() > loose.limit()


def test_replay_takes_several_columns_as_one_device() -> None:
    rng = np.random.default_rng(5)
    rows = _normal(rng, 1200)
    rows[1000:, 0] += 5
    text = "time,p,q,r\n" + "".join(
        f"{60 * i},{a:.4f},{b:.4f},{'' if i % 7 == 0 else f'{c:.4f}'}\n"
        for i, (a, b, c) in enumerate(rows))
    out = io.StringIO()
    assert replay_csv(io.StringIO(text), out, "time", ["p", "q", "r"], "t2", warmup=300) == 1200
    flags = [int(line.rsplit(",", 1)[1]) for line in out.getvalue().splitlines()[1:]]
    assert sum(flags[:1000]) <= 2 and sum(flags[1000:]) >= 190
    assert readings_per_day([str(60 * i) for i in range(50)]) == 1440


def test_the_field_that_moved_drives_the_score() -> None:
    rng = np.random.default_rng(6)
    det = T2(3, 1e-5, warmup=300)
    for row in _normal(rng, 1000):
        det.update(row)
    row = _normal(rng, 1)[0]
    row[2] += 1.0                        # the third field, ten of its deviations
    assert det.update(row) >= 1.0
    assert det.drivers()[0][0] == 2 and det.drivers()[0][1] > 0.8


def test_a_lasting_change_of_regime_is_learnt_not_alarmed_for_ever() -> None:
    rng = np.random.default_rng(7)
    det = T2(3, 1e-5, warmup=300, relearn=500)
    for row in _normal(rng, 1000):
        det.update(row)
    moved = _normal(rng, 3000)
    moved[:, 2] += 3.0                   # another duty: the third field for good
    flags = [det.update(row) >= 1.0 for row in moved]
    assert all(flags[:500])              # an alarm while it could still be a fault ...
    assert sum(flags[1500:]) <= 3        # ... then learnt afresh, quiet again


def test_the_water_quality_rule_runs_over_mapped_columns() -> None:
    text = ("Time,Cl,pH,Trueb\n"
            "0,0.20,7.2,0.1\n"        # within GB 5749-2022
            "60,0.01,7.2,0.1\n"       # free chlorine too low
            "120,0.20,9.1,0.1\n"      # pH too high
            "180,0.20,,2.5\n"         # turbidity too high, pH not sent
            "240,0.20,7.0,0.2\n")
    out = io.StringIO()
    replay_csv(io.StringIO(text), out, "Time", [], "water_quality",
               rule_fields={"Cl": "chlorine_mg_l", "pH": "ph", "Trueb": "turbidity_ntu"})
    assert [line.split(",")[2] for line in out.getvalue().splitlines()[1:]] == \
        ["0", "1", "1", "1", "0"]


def test_peaks_over_threshold_keeps_to_the_budget_on_normal_data() -> None:
    rng = np.random.default_rng(8)
    det = T2(3, 1e-3, warmup=1000, relearn=10**9)
    rows = _normal(rng, 41_000)
    alarms = 0
    was = False
    for row in rows:
        now = det.update(row) >= 1.0
        alarms += now and not was          # alarms, not alarmed readings
        was = now
    # 40,000 scored readings at one in a thousand: about 40. Measured 127: the mean and
    # covariance are estimates too, which fattens the tail a little; the band holds it within
    # a factor of five either way (0 or thousands would be a broken calibration).
    assert 8 <= alarms <= 200, alarms


def test_a_fault_that_builds_up_under_the_limit_crosses_it() -> None:
    # A score growing 10 % a reading from the tail's start (a valve closing over a minute):
    # each reading is under the limit and learnt. Winsorised, the tail lets it through
    # after 50-51 readings (about 120 times its start); unwinsorised it chased the fault
    # for 93 readings, to about 7,000 times its start (SKAB valve1, README).
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        tail = Tail(1e-5, 1e-3, relearn=10**9)
        tail.fit(rng.chisquare(3, 400))
        score, readings = tail.t, 0
        while readings < 300:
            score *= 1.1
            readings += 1
            if tail.judge(score) >= 1.0:
                break
        assert readings <= 60, (seed, readings)


def _meter_stage(interval_ms: int = 60_000) -> Callable[[int, bool], list[Alert]]:
    """A live detect stage (t2) and a water meter's readings (every ``interval_ms``, a
    minute by default) through the pipeline: a function of the reading's index (and whether
    pressure stops following flow) giving the anomaly alerts it raised or cleared."""
    from conftest import SMALL_REGISTRY

    from collector.decode import Decoder
    from collector.detect.alerts import AlertBook
    from collector.detect.stage import DetectStage
    from collector.enrich import Enricher
    from collector.metrics import Counters
    from collector.pipeline import Pipeline
    from collector.records import Inbound
    from collector.settings import DetectSettings, ValidationSettings

    stage = DetectStage(SMALL_REGISTRY, DetectSettings(statistical_model="t2"), AlertBook())
    pipeline = Pipeline(Decoder(ValidationSettings(max_age_days=10), "sc"),
                        Enricher(SMALL_REGISTRY), Counters(), stage)
    start = 1_700_000_000_000

    def reading(i: int, odd: bool) -> list[Alert]:
        rng = np.random.default_rng(i)
        flow = 10 + 3 * rng.normal()
        pressure = 400 - 10 * (flow - 10) + rng.normal()     # pressure falls with demand
        if odd:
            pressure += 40                                   # ... until it does not
        body = {"ts": start + i * interval_ms, "flow_m3h": round(max(flow, 0.0), 3),
                "pressure_kpa": round(pressure, 2)}
        done = pipeline.process(Inbound("sc/c2/water_meter/meter-1/telemetry",
                                        orjson.dumps(body), start + i * interval_ms))
        return [a for a in done.alerts if a.rule == "anomaly"]

    reading.stage = stage  # type: ignore[attr-defined]
    return reading


def test_the_live_stage_raises_one_anomaly_alert_naming_the_field() -> None:
    reading = _meter_stage()
    alerts = [a for i in range(2000) for a in reading(i, i >= 1990)]
    assert [a.state for a in alerts] == ["raised"]
    assert alerts[0].message.startswith("unusual together: pressure_kpa")


@pytest.mark.parametrize(("interval_s", "smooth", "warmup"),
                         [(1, 30, 86_400), (60, 1, 1440), (300, 1, 300)])
def test_the_live_stage_takes_a_devices_rate_from_its_first_readings(
        interval_s: int, smooth: int, warmup: int) -> None:
    # As replay takes it from a file's first rows: a meter reporting every second is
    # smoothed over 30 s, and each warms up over a day of its readings (at least 300).
    # (Built at the first reading, every device was taken for one a minute.)
    from collector.detect.catalog import RATE_READINGS
    reading = _meter_stage(interval_s * 1000)
    stage = reading.stage  # type: ignore[attr-defined]
    for i in range(RATE_READINGS - 1):
        reading(i, False)
    assert ("meter-1", "*") not in stage._detectors
    reading(RATE_READINGS - 1, False)
    det = stage._detectors["meter-1", "*"]
    assert isinstance(det, Daily)
    assert (det._smooth, det.warmup) == (1 / smooth, warmup)
    offline = for_device(2, 86_400 / interval_s, 0.01)
    assert (offline._smooth, offline.warmup) == (det._smooth, det.warmup)
    # The readings gathered meanwhile are its first learnt, in order (a reading a second
    # keeps every 60th of its day-long warm-up: none of these 50 yet).
    assert det._n == RATE_READINGS
    if det._stride == 1:
        first_flow = round(max(10 + 3 * np.random.default_rng(0).normal(), 0.0), 3)
        assert len(det._buffer) == RATE_READINGS and det._buffer[0][0][0] == first_flow


def test_a_device_taken_over_resumes_its_detector_from_plain_data() -> None:
    held = _meter_stage()
    for i in range(1900):                 # past the day-long warm-up, nothing odd
        assert held(i, False) == []
    held_stage = held.stage  # type: ignore[attr-defined]
    assert held_stage.statistical_states(["other-device"]) == {}
    saved = orjson.loads(orjson.dumps(held_stage.statistical_states(["meter-1"])))
    assert set(saved) == {"meter-1"} and saved["meter-1"]["t2"]["plain"]["n"] > 1440
    taker, cold = _meter_stage(), _meter_stage()
    assert taker.stage.resume_statistical(saved) == (1, 0)  # type: ignore[attr-defined]
    assert cold.stage.resume_statistical({"meter-1": {"t2": {**saved["meter-1"]["t2"],  # type: ignore[attr-defined]
                                                            "profile": [[1.0]]}},
                                          "nobody": saved["meter-1"]}) == (0, 2)
    # The next collector scores at once, as the first would have; a cold one is muted.
    went_on = [a.state for i in range(1900, 1910) for a in held(i, i >= 1905)]
    took_over = [a.state for i in range(1900, 1910) for a in taker(i, i >= 1905)]
    assert went_on == took_over == ["raised"]
    assert all(cold(i, i >= 1905) == [] for i in range(1900, 1910))


def test_a_state_that_is_not_one_is_refused() -> None:
    det = for_device(2, 1440, 0.01, warmup=300)
    rng = np.random.default_rng(15)
    for i, row in enumerate(_normal(rng, 400)[:, :2]):
        det.update(row, i // 60 % 24)
    good = det.state()
    assert good is not None and Daily.from_state(good).state() == good
    plain = good["plain"]
    for bad in ({**good, "plain": {**plain, "cov": [[1.0, 0.0]]}},
                {**good, "plain": {**plain, "t": float("nan")}},
                {**good, "daily": {**plain, "n": 10}}, {**good, "extra": 1},
                {**good, "profile": [[1.0]] * 24}, {**good, "profile": good["profile"][:3]},
                {**good, "plain": {**plain, "recent": [[1.0]]}},
                {**good, "rate": 0.0}, {"plain": plain}, "t2", None):
        with pytest.raises(ValueError):
            Daily.from_state(bad)
    assert for_device(2, 1440, 0.01).state() is None      # still in its warm-up


def test_the_live_warm_up_is_a_day_of_readings_within_bounds() -> None:
    assert plain_for_device(3, 1440, 0.01)._warmup == MAX_WARMUP == 1440      # a reading a minute
    assert plain_for_device(3, 96, 0.01)._warmup == 300                       # every 15 minutes
    assert plain_for_device(3, 1440, 0.01, warmup=400)._warmup == 400         # a benchmark's own
    # Memory: about four days of readings, never forgetting faster than 0.001 a reading.
    assert plain_for_device(3, 1440, 0.01)._forget == 1 / (4 * 1440)
    assert plain_for_device(3, 24, 0.01)._forget == 0.001


def test_a_fast_device_is_judged_on_half_a_minute_of_its_readings() -> None:
    # A reading a second; a shift of three times a field's own noise, lasting ten minutes: too
    # small for any one reading at one false alarm in 100 days of seconds, plain in the mean
    # of thirty. Normal data stays quiet either way.
    rng = np.random.default_rng(12)
    normal = _normal(rng, 3000)
    shifted = _normal(rng, 600)
    shifted[:, 2] += 0.3
    found = {}
    for smooth in (1, 30):
        det = T2(3, budget(1 / 100, 86_400 / smooth), warmup=1440, smooth=smooth)
        quiet = sum(det.update(row) >= 1.0 for row in normal)
        found[smooth] = sum(det.update(row) >= 1.0 for row in shifted)
        assert quiet <= 2, (smooth, quiet)
    assert found[1] <= 30 and found[30] >= 500, found
    assert plain_for_device(3, 86_400, 0.01)._smooth == 1 / 30       # a reading a second
    assert plain_for_device(3, 1440, 0.01)._smooth == 1.0            # a minute: reading by reading


def test_a_snapshot_from_an_older_version_resumes() -> None:
    rng = np.random.default_rng(13)
    det = T2(3, 1e-5, warmup=300)
    for row in _normal(rng, 400):
        det.update(row)
    state = det.__getstate__()
    assert isinstance(state, tuple)
    assert det._k == 0                  # nothing pending, as the old version never had
    old = pickle.loads(pickle.dumps(state[1]))     # a copy: updates change arrays in place
    for name in ("_smooth", "_smoothed", "_block", "_k"):           # slots added since
        del old[name]
    old["_since"] = 0                   # a slot since gone
    resumed = T2.__new__(T2)
    resumed.__setstate__((None, old))
    row = _normal(rng, 1)[0]
    assert pickle.loads(pickle.dumps(det)).update(row) == resumed.update(row) == det.update(row)


def test_replay_runs_the_detector_the_collector_runs_live(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    rows = _normal(rng, 700)
    rows[600:, 0] += 5
    path = tmp_path / "probe.csv"
    path.write_text("time,p,q,r\n" + "".join(
        f"{60 * i},{a:.4f},{b:.4f},{c:.4f}\n" for i, (a, b, c) in enumerate(rows)))

    def replay(*extra: str, model: str | None = None) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCT_")}
        if model:
            env["SCT_DETECT__STATISTICAL_MODEL"] = model
        run = subprocess.run([sys.executable, "-m", "collector", "detect", "replay", str(path),
                              "--time-column", "time", "--value-column", "p",
                              "--value-column", "q", "--value-column", "r", *extra],
                             capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0, run.stderr
        return run.stdout

    assert replay("--warmup", "300") == replay("--detector", "t2", "--warmup", "300")
    assert replay(model="surprise") == replay("--detector", "surprise")
    assert replay(model="surprise") != replay("--detector", "t2")
    flags = [int(line.rsplit(",", 1)[1]) for line in replay("--warmup", "300").split()[1:]]
    assert sum(flags[:600]) <= 2 and sum(flags[600:]) >= 95


def _simulated(kind: str, days: int, count: int) -> list[tuple[np.ndarray, list[int]]]:
    """``count`` simulated devices of ``kind`` (the demo's registry), a reading a minute for
    ``days`` days from 08:00 China time: their watched fields and each reading's hour."""
    from collector.detect.stage import WATCHED
    from devices.registry import from_mapping
    from simulators.behaviour import SimDevice
    from simulators.registry_gen import generate

    registry = from_mapping(generate(4, seed=11))
    start = 1_795_000_000 - (1_795_000_000 + 8 * 3600) % 86_400 + 8 * 3600
    out = []
    for device in [d for d in registry.devices.values() if d.kind == kind][:count]:
        sim = SimDevice(device, random.Random(device.id), start, [], incidents=False)
        rows, hours = [], []
        for i in range(days * 1440):
            obj, _ = sim.step(start + i * 60)
            rows.append([obj[name] for name in WATCHED[kind]])
            hours.append((start + i * 60 + 8 * 3600) % 86_400 // 3600)
        out.append((np.array(rows, dtype=float), hours))
    return out


def _alarms(detector: Any, rows: np.ndarray, hours: list[int]) -> int:
    """Alarms raised (a run of scores of 1 or more is one)."""
    raised, was = 0, False
    for row, hour in zip(rows, hours, strict=True):
        now = detector.update(row, hour) >= 1.0
        raised += now and not was
        was = now
    return raised


def test_the_daily_peaks_and_a_slow_drift_raise_no_alarm_but_a_burst_does() -> None:
    # Simulated water meters (demand peaks at 07:00-08:00 and 18:00-20:00, pressure falling
    # with it) and rain-tank levels (slow drift, no daily cycle), four days each.
    meters, tanks = _simulated("water_meter", 4, 40), _simulated("water_level", 4, 4)
    plain = sum(_alarms(plain_for_device(2, 1440, 0.01), r, h) for r, h in meters)
    assert plain >= 1        # one ellipse for the whole day leaves a peak outside it
    assert all(_alarms(for_device(2, 1440, 0.01), r, h) == 0 for r, h in meters)
    assert all(_alarms(for_device(len(r[0]), 1440, 0.01), r, h) == 0 for r, h in tanks)
    rows, hours = meters[0]
    det = for_device(2, 1440, 0.01)
    assert _alarms(det, rows, hours) == 0
    burst = rows[-60:] * [1.0, 0.6]           # pressure 40 % down for an hour, flow as usual
    assert sum(det.update(r, h) >= 1.0 for r, h in zip(burst, hours[-60:], strict=True)) >= 55
