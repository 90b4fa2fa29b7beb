"""The levels model: the live detector of a one-field device (a rain tank; a one-column
replay)."""

from __future__ import annotations

import io
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest

from collector.decode import Decoded
from collector.detect.alerts import AlertBook
from collector.detect.catalog import for_device
from collector.detect.daily import Daily
from collector.detect.levels import BLOCK, JUMP, LEVELS, REST, Levels
from collector.detect.replay import replay_csv
from collector.detect.stage import DetectStage, _read_parts
from collector.settings import DetectSettings
from devices.payloads import TELEMETRY_MODELS
from devices.topics import DeviceTopic
from tests.detect.test_multivariate import _alarms, _simulated
from tests.detect.test_rules import REGISTRY

STEP = 1.875     # a level of the grid _warm leaves: 30..60 in 16


def _warm(warmup: int = 300) -> Levels:
    """A detector whose warm-up swung up and down between 40 and 50 (a grid of 30..60),
    0.2 a reading: every pair of levels it knows is a step of one, and it ends at 45."""
    det = Levels(warmup)
    for i in range(warmup):
        phase = (i + 26) % 100
        value = 40 + 0.2 * (phase if phase <= 50 else 100 - phase)
        assert det.update(value) == 0.0                # muted in the warm-up
    assert value == pytest.approx(45.0)
    return det


def test_the_warm_up_is_muted_and_sets_the_grid() -> None:
    det = _warm()
    assert det.state() is not None
    assert det.update(45.2) == 0.0                     # a pair it has seen
    assert Levels(300).state() is None                 # still in its warm-up


def test_a_drift_a_level_at_a_time_is_learnt_and_a_new_jump_alarms_once() -> None:
    det = _warm()
    # A tank filling well past anything the warm-up saw, slowly: every pair is new but
    # each moves one level, so nothing alarms (and it runs off the grid's top).
    drift = [det.update(45 + 0.05 * i) for i in range(600)]
    assert max(drift) < 1.0
    det = _warm()
    assert det.update(45.0 - 3 * STEP) >= 1.0          # three levels down at once: new
    for _ in range(REST):                              # quiet after the alarm
        assert det.update(45.0) < 1.0
    assert det.update(45.0 - 3 * STEP) == 0.0          # the same jump again: known


def test_a_new_jump_while_quiet_is_scored_but_does_not_alarm() -> None:
    det = _warm()
    assert det.update(30.0) >= 1.0
    assert 0.0 < det.update(59.0) < 1.0               # new, far, but within the rest


def test_a_reading_off_the_grid_widens_it_to_the_series_own_scale() -> None:
    det = _warm()                                      # a grid of 30..60, levels of 1.875
    assert det.update(500.0) >= 1.0                    # far off the grid: a new, long jump
    state = det.state()
    assert state is not None and state["low"] == 30.0
    assert 500.0 < state["low"] + 16 * state["width"] < 540.0   # its top level holds it
    for _ in range(REST):
        det.update(45.0)
    # 30..60 is the grid's bottom level now: the old swings are no jump at all, and the
    # spike's own jump is known.
    assert det.update(59.0) == 0.0 and det.update(500.0) == 0.0
    slow = _warm()
    for i in range(75):                                # up to 59.9, a level at a time
        assert slow.update(45 + 0.2 * i) < 1.0
    assert slow.update(60.1) < 1.0                     # one level past the top: no alarm,
    grown = slow.state()                               # but the grid doubles upwards
    assert grown is not None and grown["width"] == pytest.approx(2 * STEP)
    assert slow.update(60.2) == 0.0                    # that step is known, on the new grid


def test_memory_is_bounded_whatever_comes() -> None:
    det = _warm()
    rng = np.random.default_rng(1)
    for v in rng.normal(0, 1e6, 20_000):
        det.update(float(v))
    state = det.state()
    assert state is not None and 1 < len(state["pairs"]) <= LEVELS ** 2


def test_a_state_round_trips_as_plain_data_and_a_bad_one_is_refused() -> None:
    det = _warm()
    det.update(30.0)                                   # an alarm: quiet for a while
    good = orjson.loads(orjson.dumps(det.state()))
    again = Levels.from_state(good)
    assert again.state() == det.state()
    assert again.update(30.0) == det.update(30.0)
    for bad in ({**good, "width": 0.0}, {**good, "pairs": [[0, LEVELS]]}, {**good, "extra": 1},
                {**good, "last": -1}, {**good, "low": 1e306}, {**good, "width": 1e306},
                {**good, "low": float("nan")}, {**good, "quiet": REST + 1}, "levels", None):
        with pytest.raises(ValueError):
            Levels.from_state(bad)


def test_the_live_detector_is_levels_for_one_field_and_the_pair_for_more() -> None:
    assert isinstance(for_device(1, 1440, 0.01), Levels)
    assert isinstance(for_device(2, 1440, 0.01), Daily)
    assert for_device(1, 1440, 0.01).warmup == 1440    # a day of minutes, as the pair's
    assert for_device(1, 1440, 0.01, warmup=400).warmup == 400
    assert JUMP >= 2                                   # a one-level step is never an alarm


def _tank_stage() -> DetectStage:
    return DetectStage(REGISTRY, DetectSettings(statistical_model="t2"), AlertBook())


def _tank(stage: DetectStage, i: int, level: float, said: list[str] | None = None
          ) -> list[str]:
    ts = 1_700_000_000_000 + i * 60_000
    body = TELEMETRY_MODELS["water_level"].model_validate({"ts": ts, "level_pct": level})
    done = stage.observe(Decoded(DeviceTopic("c1", "water_level", "tank", "telemetry"), body,
                                 ts, None, {}))
    if said is not None:
        said.extend(a.message for a in done if a.rule == "anomaly")
    return [f"{a.rule}:{a.state}" for a in done if a.rule == "anomaly"]


def test_the_stage_runs_it_for_a_tank_hands_it_over_and_snapshots_it(tmp_path: Path) -> None:
    tank = "tank"
    held = _tank_stage()
    for i in range(1500):                              # a day's warm-up, then quiet
        assert _tank(held, i, 40 + (i % 50) / 10) == []
    saved = orjson.loads(orjson.dumps(held.statistical_states([tank])))
    assert set(saved[tank]) == {"levels", "last"}
    taker = _tank_stage()
    assert taker.resume_statistical(saved) == (1, 0)
    assert taker.resume_statistical({tank: {"levels": {**saved[tank]["levels"],
                                                        "width": -1}, "last": [1.0]}}) == (0, 1)
    # Both raise the same alert for a drop of 30 points, the taker without a warm-up.
    said: list[str] = []
    assert _tank(held, 1500, 10.0, said) == _tank(taker, 1500, 10.0) == ["anomaly:raised"]
    assert said == ["level_pct jumped from 44.9 to 10, a jump this device has never made"]
    # A snapshot keeps it; one holding a one-field pair (before the levels model) drops
    # that pair, and the device warms up again.
    held.snapshot(tmp_path / "snap")
    restored = _tank_stage()
    restored.restore(tmp_path / "snap")
    assert isinstance(restored._detectors[(tank, "*")], Levels)
    snap = _read_parts((tmp_path / "snap").read_bytes())[0]
    snap["detectors"][(tank, "*")] = for_device(2, 1440, 0.01)
    snap["detectors"][(tank, "*")].dims = 1
    (tmp_path / "old").write_bytes(pickle.dumps(snap))
    older = _tank_stage()
    older.restore(tmp_path / "old")
    assert (tank, "*") not in older._detectors


def test_simulated_rain_tanks_raise_nothing_and_a_one_column_replay_flags_a_burst() -> None:
    tanks = _simulated("water_level", 4, 4)            # four days of slow drift each
    assert all(_alarms(for_device(1, 1440, 0.01), r, h) == 0 for r, h in tanks)
    rows, _ = tanks[0]
    levels = [float(v) for v in rows[:2000, 0]]
    levels[1800] -= 30                                 # a burst: the tank empties at once
    text = "t,level\n" + "".join(f"{i * 60},{v}\n" for i, v in enumerate(levels))
    out = io.StringIO()
    replay_csv(io.StringIO(text), out, "t", ["level"], "t2")
    flags = [int(line.rsplit(",", 1)[1]) for line in out.getvalue().split()[1:]]
    assert [i for i, f in enumerate(flags) if f] == [1800]


@pytest.mark.parametrize("odd", ["inf", "-inf", "1e308", "-1e308", "nan", "1e-320"])
def test_extreme_cells_are_judged_or_skipped_never_a_crash(odd: str) -> None:
    before = "".join(f"{i * 60},{40 + i % 7}\n" for i in range(100))
    after = "".join(f"{6060 + i * 60},{[odd, '1e308', '-1e308', '41'][i % 4]}\n"
                    for i in range(400))
    out = io.StringIO()
    rows = replay_csv(io.StringIO(f"t,v\n{before}6000,{odd}\n{after}"), out, "t", ["v"],
                      "t2", warmup=50)
    assert rows == 501 and "nan" not in out.getvalue() and "inf" not in out.getvalue()
    det = _warm()
    for value in (float(odd), 1e308, -1e308, 45.0, float(odd)):
        assert math.isfinite(det.update(value))
    state = det.state()             # its own model refuses numbers that are not finite
    assert state is not None and Levels.from_state(state).state() == state


def test_an_infinite_cell_is_no_reading_for_the_pair_either() -> None:
    rows = "".join(f"{i * 60},{40 + i % 7},{20 + i % 3}\n" for i in range(400))
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # numpy's overflow warnings: an inf got in
        replay_csv(io.StringIO(f"t,a,b\n{rows}24000,inf,21\n24060,41,-inf\n24120,41,21\n"),
                   out, "t", ["a", "b"], "t2", warmup=300)
    scores = [float(line.split(",")[1]) for line in out.getvalue().split()[1:]]
    assert len(scores) == 403 and all(math.isfinite(v) for v in scores)


NOISE = [0.0, 0.3, -0.2, 0.1, -0.3, 0.2, 0.0]


def _square(warmup: int = 400) -> Levels:
    """A warm-up flipping between 40 and 50 each reading (a little noise): every block of
    BLOCK readings has a mean near 45."""
    det = Levels(warmup)
    for i in range(warmup):
        assert det.update(40 + 10 * (i % 2) + NOISE[i % 7]) == 0.0
    return det


def test_a_change_of_pattern_no_single_step_shows_is_found_by_the_block_means() -> None:
    # The flipping stops high: each reading's pair (high, high) is a jump of nothing, but
    # the block's mean moves from 45 to 50, a jump the means never made.
    det = _square()
    scores = [det.update(50.0 + NOISE[i % 7]) for i in range(3 * BLOCK)]
    assert max(scores[:BLOCK - 1]) == 0.0           # no block complete yet: nothing
    assert scores[BLOCK - 1] >= 1.0                 # the first block's mean alarms
    assert det.said is not None
    assert det.said[0] == pytest.approx(45.0, abs=0.2) and det.said[1] == pytest.approx(50.05)
    # The flipping itself goes on being known: no alarm from either view.
    again = _square()
    assert max(again.update(40 + 10 * (i % 2) + NOISE[i % 7]) for i in range(600)) < 1.0
    # A reading's own jump is told as such (said None).
    jump = _warm()
    assert jump.update(30.0) >= 1.0 and jump.said is None


def test_a_state_from_before_the_block_view_resumes_with_it_and_bad_blocks_are_refused(
        ) -> None:
    det = _square()
    det.update(41.0)                                   # a block part-filled
    good = orjson.loads(orjson.dumps(det.state()))
    assert len(good["block"]) == 1 and good["coarse"] is not None
    old = {k: v for k, v in good.items() if k not in ("coarse", "block")}
    resumed = Levels.from_state(old)                   # its coarse grid: the readings' one
    coarse = resumed.state()
    assert coarse is not None
    assert [list(p) for p in coarse["coarse"]["pairs"]] == good["pairs"]
    for bad in ({**good, "block": [1e306]}, {**good, "block": [1.0] * BLOCK},
                {**good, "coarse": {**good["coarse"], "pairs": [[0, LEVELS]]}},
                {**good, "coarse": {**good["coarse"], "width": 0.0}}):
        with pytest.raises(ValueError):
            Levels.from_state(bad)


def test_the_stage_tells_a_block_means_change_as_such() -> None:
    stage = _tank_stage()
    for i in range(1440):                              # a day's warm-up, flipping
        assert _tank(stage, i, 40 + 10 * (i % 2) + NOISE[i % 7]) == []
    said: list[str] = []
    got = [_tank(stage, 1440 + i, 50.0, said) for i in range(BLOCK)]
    assert got[-1] == ["anomaly:raised"] and got[:-1] == [[]] * (BLOCK - 1)
    assert said == [f"the mean of level_pct's last {BLOCK} readings moved from about 45 to 50, "
                    "a change this device has never made"]
