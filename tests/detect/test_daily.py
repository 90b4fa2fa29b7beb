"""The live detector's pair of T² models scored in one pass (collector/detect/daily.py)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from collector.detect.daily import DAILY, PLAIN, Daily, for_device
from collector.detect.multivariate import T2, WINSOR, Tail, plain_for_device, tail_of


def _readings(rng: np.random.Generator, n: int, start: int = 0) -> tuple[np.ndarray, list[int]]:
    """Minute readings of a pipe (flow and pressure falling with it) with a daily cycle,
    and a third field apart; and each reading's hour."""
    minutes = np.arange(start, start + n)
    hours = [int(m // 60 % 24) for m in minutes]
    demand = 10 + 4 * np.sin(2 * np.pi * minutes / 1440) + rng.normal(0, 1, n)
    rows = np.column_stack([demand, 400 - 8 * demand + rng.normal(0, 1, n),
                            rng.normal(7, 0.1, n)])
    return rows, hours


def _warm(det: Daily, rng: np.random.Generator, days: int = 3) -> int:
    rows, hours = _readings(rng, days * 1440)
    for row, hour in zip(rows, hours, strict=True):
        det.update(row, hour)
    return days * 1440


def test_both_t2_from_one_product_are_each_models_own() -> None:
    # The whitened deviations' squares are, per model, the T² of its view: the reading less
    # its mean (plain), less the hour's usual and its mean (daily), under its own inverse.
    rng = np.random.default_rng(1)
    det = for_device(3, 1440, 0.01)
    start = _warm(det, rng)
    row, hour = _readings(rng, 1, start)[0][0], 9
    u = det._whiten.dot(row) - det._centre[hour]
    got = (u * u).dot(det._split)
    assert det._shift is not None
    views = (row - det._mean[PLAIN], row - det._shift[hour, DAILY] - det._mean[DAILY])
    for k, view in enumerate(views):
        inv = np.linalg.inv(det._cov[k] + np.diag(np.diag(det._cov[k])) * 1e-3)
        assert got[k] == pytest.approx(view @ inv @ view, rel=1e-6)


def test_the_scaled_tail_is_the_tail_forgotten_reading_by_reading() -> None:
    rng = np.random.default_rng(2)
    p, forget = 1e-4, 0.001
    warm = rng.chisquare(6, 1000)
    tail = Tail(p, forget, 1440)
    tail.fit(warm)
    t, seen, over, excess = tail_of(warm)
    alarm, keep = False, 1 - forget / 10
    scores = np.concatenate([rng.chisquare(6, 5000), 8 * rng.chisquare(6, 200),
                             rng.chisquare(6, 5000)])
    for t2 in scores:
        limit = t + excess / over * max(0.0, math.log(over / (p * seen)))
        score = t2 / limit
        if score >= (0.5 if alarm else 1.0):
            alarm, expected = True, max(score, 1.0)
        else:
            alarm, expected = False, min(score, 0.999)
            most = WINSOR * excess / over         # the mean excess, winsorised
            seen, over, excess = keep * seen + 1, keep * over, keep * excess
            if t2 > t:
                over, excess = over + 1, excess + min(t2 - t, most)
        assert tail.judge(float(t2)) == pytest.approx(expected, rel=1e-9)
    state = tail.state()
    assert (state["n_seen"], state["n_over"], state["excess"]) == pytest.approx(
        (seen, over, excess), rel=1e-9)


def test_a_lasting_change_of_regime_is_learnt_by_the_pair_too() -> None:
    rng = np.random.default_rng(3)
    det = Daily(3, 1e-5, warmup=1440, forget=1 / 5760, relearn=500, readings_per_hour=60)
    start = _warm(det, rng, 2)
    rows, hours = _readings(rng, 4000, start)
    rows[:, 2] += 3.0                     # the third field moves for good
    flags = [det.update(row, hour) >= 1.0 for row, hour in zip(rows, hours, strict=True)]
    assert all(flags[:500])               # an alarm while it could still be a fault ...
    assert sum(flags[2500:]) <= 3         # ... then learnt afresh by both, quiet again
    assert det.state() is not None


def test_a_snapshot_of_the_pair_as_two_t2_objects_resumes() -> None:
    # Before the pair was scored in one pass, a snapshot pickled Daily as two T2 objects, the
    # profile and the warm-up buffer; both a device past its warm-up and one still in it
    # resume, the first where it was.
    rng = np.random.default_rng(4)
    rows, hours = _readings(rng, 1600)
    plain, daily = plain_for_device(3, 1440, 0.01), plain_for_device(3, 1440, 0.01)
    profile = np.tile(rows[:1440].mean(axis=0), (24, 1))
    for h in set(hours[:1440]):
        profile[h] = rows[:1440][np.array(hours[:1440]) == h].mean(axis=0)
    for row, hour in zip(rows, hours, strict=True):
        plain.update(row)
        daily.update(row - profile[hour])
    old = {"dims": 3, "_plain": plain, "_daily": daily, "_profile": profile,
           "_rate": 1 / 240, "_buffer": [], "_n": 1600, "_warmup": 1440}
    resumed = Daily.__new__(Daily)
    resumed.__setstate__((None, pickle.loads(pickle.dumps(old))))
    state = resumed.state()
    assert state is not None and state["plain"]["n"] == 1600
    assert state["plain"]["mean"] == pytest.approx(plain.state()["mean"])   # type: ignore[index]
    assert np.allclose(state["profile"], profile)
    fresh = {**old, "_plain": plain_for_device(3, 1440, 0.01),
             "_daily": plain_for_device(3, 1440, 0.01), "_profile": None,
             "_buffer": [(row, hour) for row, hour in zip(rows[:100], hours[:100], strict=True)]}
    warming = Daily.__new__(Daily)
    warming.__setstate__((None, pickle.loads(pickle.dumps(fresh))))
    assert warming.state() is None and len(warming._buffer) == 100
    assert isinstance(pickle.loads(pickle.dumps(resumed)), Daily)


def test_states_whose_parts_disagree_are_refused() -> None:
    rng = np.random.default_rng(5)
    det = for_device(3, 1440, 0.01)
    _warm(det, rng, 2)
    good = det.state()
    assert good is not None and Daily.from_state(good).state() == good
    for bad in ({**good, "daily": {**good["daily"], "p": good["daily"]["p"] * 2}},
                {**good, "plain": {**good["plain"], "smoothed": [1.0, 2.0, 3.0]}}):
        with pytest.raises(ValueError):
            Daily.from_state(bad)
    assert isinstance(T2.from_state(good["plain"]), T2)     # each part is a T² state


def test_a_fast_device_resumes_with_both_smoothed_views() -> None:
    # A reading a second: each model's view is smoothed on its own (the daily one's is the
    # smoothed difference from the hour's usual), and a take-over carries both.
    rng = np.random.default_rng(6)
    det = for_device(2, 86_400, 0.01, warmup=1440)
    rows = rng.normal([1.0, 2.0], 0.1, (3000, 2))
    hours = [i // 1200 % 24 for i in range(3000)]          # the hour turns in the warm-up
    for row, hour in zip(rows, hours, strict=True):
        det.update(row, hour)
    state = det.state()
    assert state is not None
    assert state["plain"]["smoothed"] != state["daily"]["smoothed"]
    resumed = Daily.from_state(state)
    assert resumed.state() == state
    row = rng.normal([1.0, 2.0], 0.1)
    assert resumed.update(row, 2) == det.update(row, 2)


def _drift_then_step(det: Daily, seed: int) -> np.ndarray:
    """A reading a second of four fields: after a 400-reading warm-up the first field drifts
    (a machine warming up: one reading's spread every 300 readings), and 600 readings later
    the second steps by three spreads for 300 readings (a valve closing). The flags."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.0, 1.0, (1500, 4))
    rows[:, 0] += np.clip(np.arange(1500) - 400, 0, None) / 300
    rows[1000:1300, 1] += 3.0
    return np.array([det.update(row, 10) >= 1.0 for row in rows])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_fast_devices_drift_in_one_field_does_not_hide_a_fault_in_another(seed: int) -> None:
    # SKAB's valve faults after its temperature drift: against the covariance of days the
    # drift made most of T², the tails rose with it and the step stayed under them. A fast
    # device is judged against its recent spread (two minutes) blended with a share of the
    # covariance of days (multivariate.blended), which widens with the drifting field.
    det = for_device(4, 86_400, 0.01, warmup=400)
    assert det._spread > 10 * det._forget
    flags = _drift_then_step(det, seed)
    assert not flags[400:1000].any()               # the drift alone: nothing
    assert flags[1000:1300].sum() >= 250           # the step: found, and held
    days = for_device(4, 86_400, 0.01, warmup=400)
    days._spread = days._forget                    # its recent spread as long as the cov
    assert not _drift_then_step(days, seed)[1000:1300].any()


def test_a_fast_devices_recent_spread_is_handed_over_and_older_states_start_it() -> None:
    rng = np.random.default_rng(8)
    fast = for_device(3, 86_400, 0.01, warmup=400)
    for row in rng.normal(0.0, 1.0, (700, 3)):
        fast.update(row, 10)
    state = fast.state()
    assert state is not None and state["plain"]["recent"] is not None
    assert state["plain"]["recent"] != state["plain"]["cov"]
    assert Daily.from_state(state).state() == state
    # A state written before the recent spread: it starts as the covariance of days.
    older = {**state, "plain": {**state["plain"], "recent": None},
             "daily": {**state["daily"], "recent": None}}
    resumed = Daily.from_state(older)
    assert resumed._recent is not None and np.array_equal(resumed._recent, resumed._cov)
    # ... and a snapshot pickled before it.
    _, saved = fast.__getstate__()
    del saved["_spread"], saved["_recent"]
    unpickled = Daily.__new__(Daily)
    unpickled.__setstate__((None, saved))
    assert unpickled._spread == fast._spread and unpickled._recent is not None
    # The same for the plain T² alone (replay's t2-plain).
    one = plain_for_device(3, 86_400, 0.01, warmup=400)
    for row in rng.normal(0.0, 1.0, (700, 3)):
        one.update(row)
    one_state = one.state()
    assert one_state is not None and one_state["recent"] is not None
    assert T2.from_state(one_state).state() == one_state
    # A slower device has no recent spread: its daily cycle needs the covariance of days.
    slow = for_device(3, 1440, 0.01)
    assert slow._spread == slow._forget
    _warm(slow, rng, 2)
    slow_state = slow.state()
    assert slow._recent is None and slow_state is not None
    assert slow_state["plain"]["recent"] is None


def test_a_fast_device_warms_up_over_a_day_keeping_at_most_max_warmup_readings() -> None:
    # A reading every 3 s: a day is 28,800 readings, of which every 20th is kept (1,440),
    # smoothed as they come; the hours' usuals are then learnt from all 24 hours of the day.
    # (At most 1,440 readings, the warm-up was 72 minutes: three hours' usuals.)
    det = for_device(2, 28_800, 0.01)
    assert (det.warmup, det._stride) == (28_800, 20)
    rng = np.random.default_rng(9)
    t = np.arange(28_800 + 600)
    flow = 10 + 4 * np.sin(2 * np.pi * t / 28_800) + rng.normal(0, 1, len(t))
    rows = np.column_stack([flow, 400 - 8 * flow + rng.normal(0, 1, len(t))])
    hours = (t * 24 // 28_800) % 24
    most = 0
    for row, hour in zip(rows[:28_800], hours, strict=False):
        assert det.update(row, int(hour)) == 0.0          # muted in the warm-up
        most = max(most, len(det._buffer))
    assert most == 1440 - 1 and det._shift is not None  # learnt at the 1,440th kept
    usual = det._shift[:, DAILY, 0]
    expected = 10 + 4 * np.sin(2 * np.pi * (np.arange(24) + 0.5) / 24)
    assert np.abs(usual - expected).max() < 0.5         # every hour's usual flow
    for row, hour in zip(rows[28_800:], hours[28_800:], strict=True):
        det.update(row, int(hour))
    state = det.state()
    assert state is not None and Daily.from_state(state).state() == state
