"""The statistical detectors, the replay tool and the benchmark scoring."""

from __future__ import annotations

import io
import math
import random
import subprocess
import sys
from pathlib import Path

from bench.scoring import Confusion, nab_file, nab_normalised, scaled_sigmoid
from collector.detect.catalog import DETECTORS
from collector.detect.replay import replay_csv
from collector.detect.stage import DetectStage
from collector.detect.stats import LevelShift, Profile, RobustOutlier


def noise(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [10.0 + rng.gauss(0, 1) for _ in range(n)]


def test_a_spike_is_flagged_and_does_not_move_the_baseline() -> None:
    det = RobustOutlier()
    scores = [det.update(v) for v in noise(500)]
    assert max(scores[100:]) < 1.0, "plain noise stays under the threshold"
    assert det.update(30.0) >= 1.0
    assert det.update(10.0) < 1.0, "the baseline was not dragged by the spike"


def test_daily_baselines_learn_each_hour() -> None:
    det = RobustOutlier(daily=True)
    for _day in range(10):
        for hour in range(24):
            det.update(100.0 if hour == 8 else 10.0, hour)
    assert det.update(100.0, 8) < 1.0, "the morning peak is normal at 8"
    assert det.update(100.0, 3) >= 1.0, "... but not at 3"


def test_a_small_step_is_found_by_the_level_shift_detector() -> None:
    det = LevelShift()
    values = noise(600) + [v + 1.5 for v in noise(200, seed=2)]
    flags = [det.update(v) >= 1.0 for v in values]
    assert not any(flags[100:600])
    assert any(flags[600:700]), "1.5 sigma shift found within 100 readings"


def test_profile_keeps_flagging_a_long_anomaly() -> None:
    det = Profile()
    values = noise(500) + [v + 12 for v in noise(300, seed=3)]
    flags = [det.update(v) >= 1.0 for v in values]
    assert sum(flags[510:800]) > 280


def test_constant_memory_per_series() -> None:
    for make in DETECTORS.values():
        det = make()
        size = len(__import__("pickle").dumps(det))
        for v in noise(5000):
            det.update(v)
        assert len(__import__("pickle").dumps(det)) < size + 64, make


def test_replay_writes_one_row_per_input_row(tmp_path: Path) -> None:
    rows = ["timestamp,value,other"] + [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{v},{-v}"
                                         for i, v in enumerate([*noise(300), 99.0])]
    out = io.StringIO()
    count = replay_csv(io.StringIO("\n".join(rows) + "\n"), out, "timestamp",
                       ["value", "other"], "robust")
    lines = out.getvalue().splitlines()
    assert count == 301 and len(lines) == 302 and lines[0] == "timestamp,score,flag"
    assert lines[-1].endswith(",1") and lines[-1].startswith("2024-01-01 05:00:00")
    path = tmp_path / "in.csv"
    path.write_text("\n".join(rows) + "\n")
    run = subprocess.run([sys.executable, "-m", "collector", "detect", "replay", str(path),
                          "--time-column", "timestamp", "--value-column", "value",
                          "--detector", "surprise"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 302
    bad = subprocess.run([sys.executable, "-m", "collector", "detect", "replay", str(path),
                          "--time-column", "when", "--value-column", "value"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no column when" in bad.stderr


def test_nab_scoring_rules() -> None:
    assert math.isclose(scaled_sigmoid(-1.0), 0.98661, abs_tol=1e-5)
    assert scaled_sigmoid(0.0) == 0.0 and scaled_sigmoid(3.0) == -1.0
    n, windows = 1000, [(400, 499)]
    perfect = [1 if i == 400 else 0 for i in range(n)]
    late = [1 if i == 499 else 0 for i in range(n)]
    noisy = [1 if i in (400, 50 * 4, 800) else 0 for i in range(n)]
    assert nab_file(perfect, windows).raw == 1.0
    assert nab_file([0] * n, windows).raw == -1.0
    assert 0 < nab_file(late, windows).raw < 0.05, "the window's last row is worth ~0"
    result = nab_file(noisy, windows)
    assert (result.tp, result.fp, result.fn) == (1, 2, 0)
    assert math.isclose(result.raw, 1.0 - 0.11 - 0.11 * -scaled_sigmoid(300 / 99), rel_tol=1e-9)
    assert nab_normalised([nab_file(perfect, windows)]) == 100.0
    assert nab_normalised([nab_file([0] * n, windows)]) == 0.0
    early = [1 if i == 100 else 0 for i in range(n)]  # in probation (first 15 %): ignored
    assert nab_file(early, windows).fp == 0


def test_f1_and_alarm_rates() -> None:
    c = Confusion()
    c.add([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    assert math.isclose(c.f1, 2 / 3) and c.false_alarm_rate == 0.5


def test_stage_state_survives_a_snapshot(tmp_path: Path) -> None:
    from tests_registry import REGISTRY, feed

    from collector.detect.alerts import AlertBook
    from collector.settings import DetectSettings

    stage = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    feed(stage, 200)
    stage.snapshot(tmp_path / "state.pickle")
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(tmp_path / "state.pickle")
    assert again._state == stage._state and again._seen == stage._seen
    assert set(again._detectors) == set(stage._detectors) and stage._detectors
