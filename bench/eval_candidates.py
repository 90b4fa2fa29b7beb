"""Issue 14's candidates side by side: our numpy ``t2`` against river's HalfSpaceTrees (a
maintained library made for streaming anomaly detection), on SKAB and GECCO, with scores
and speed. Both get the same treatment: every field of a device as one input, a warm-up
(muted), a threshold from the model's own score history and the false-alarm budget
(``ALERTS_PER_DAY``), no learning from readings that alarm.

    python -m bench.eval_candidates        (needs: pip install -e '.[eval]')

HalfSpaceTrees scores 0 until its first window (250 readings) is full, so both are scored
from row 600 of each SKAB file here (the leaderboard skips 400); ``make eval`` prints t2's
scores the standard way.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.eval_detectors import DATASETS
from bench.scoring import Confusion
from collector.detect.catalog import ALERTS_PER_DAY, VECTOR_DETECTORS
from collector.detect.multivariate import budget
from collector.detect.replay import hour_of, readings_per_day, vectors

SKIP = 600
GECCO_COLUMNS = ["Cl", "pH", "Redox", "Leit", "Trueb", "Cl_2"]


class RiverHST:
    """river's HalfSpaceTrees behind the same calibration as t2."""

    def __init__(self, columns: list[str], per_day: float, warmup: int = 600,
                 forget: float = 0.001) -> None:
        from river import anomaly, compose, preprocessing
        self._model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(
            n_trees=25, height=15, window_size=250, seed=42))
        self._columns = columns
        # A normal quantile for the budget (HalfSpaceTrees' scores are bounded: no tail).
        from statistics import NormalDist
        self._z = NormalDist().inv_cdf(1 - budget(ALERTS_PER_DAY, per_day))
        self._warmup, self._forget = warmup, forget
        self._n, self._warm = 0, []  # type: tuple[int, list[float]]
        self._m, self._v, self._alarm = 0.0, 1.0, False

    def update(self, x: np.ndarray, hour: int = 0) -> float:
        features = dict(zip(self._columns, x.tolist(), strict=True))
        self._n += 1
        score = float(self._model.score_one(features))
        if self._n <= self._warmup:
            self._model.learn_one(features)
            self._warm.append(score)
            if self._n == self._warmup:
                settled = np.array(self._warm[260:])   # after its first window
                self._m = float(np.median(settled))
                mad = float(np.median(np.abs(settled - self._m)))
                self._v = (1.4826 * mad) ** 2 or 1e-6
            return 0.0
        limit = self._m + self._z * math.sqrt(self._v)
        ratio = score / limit if limit > 0 else 0.0
        self._alarm = ratio >= (0.5 if self._alarm else 1.0)
        if not self._alarm:
            self._model.learn_one(features)
            d = score - self._m
            self._m += self._forget * d
            self._v = (1 - self._forget) * self._v + self._forget * d * d
        return ratio


Build = Callable[[list[str], float], Any]
CANDIDATES: dict[str, Build] = {
    # The same warm-up as river's (SKIP rows), not t2's live day.
    "t2 (numpy)": lambda columns, per_day: VECTOR_DETECTORS["t2"](len(columns), per_day,
                                                                  ALERTS_PER_DAY, SKIP),
    "river HalfSpaceTrees": RiverHST,
}


def flags(rows: list[dict[str, str]], time_column: str, columns: list[str],
          build: Build) -> tuple[list[int], int]:
    detector = build(columns, readings_per_day([r[time_column] for r in rows[:50]]))
    out, scored = [], 0
    for row, vector in vectors(iter(rows), columns):
        if vector is None:
            out.append(0)
            continue
        out.append(int(detector.update(vector, hour_of(row[time_column])) >= 1.0))
        scored += 1
    return out, scored


def main() -> int:
    if not DATASETS.is_dir():
        print(f"no datasets at {DATASETS}", file=sys.stderr)
        return 1
    print(f"{'candidate':<22} {'SKAB valve1 F1 / FAR':>22} {'anomaly-free FAR':>17} "
          f"{'GECCO F1 / FAR':>16} {'readings/s':>11}")
    for name, build in CANDIDATES.items():
        started, scored = time.perf_counter(), 0
        results = []
        for folder in ("valve1", "anomaly-free"):
            confusion = Confusion()
            for path in sorted((DATASETS / "skab" / "data" / folder).glob("*.csv")):
                with path.open(newline="") as handle:
                    rows = list(csv.DictReader(handle, delimiter=";"))
                columns = [c for c in rows[0] if c not in ("datetime", "anomaly",
                                                           "changepoint")]
                got, n = flags(rows, "datetime", columns, build)
                scored += n
                actual = [int(float(r.get("anomaly", 0) or 0)) for r in rows]
                confusion.add(got[SKIP:], actual[SKIP:])
            results.append(confusion)
        with (DATASETS / "gecco2018" / "train.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        got, n = flags(rows, "Time", GECCO_COLUMNS, build)
        scored += n
        gecco = Confusion()
        gecco.add(got, [int(r["EVENT"]) for r in rows])
        rate = scored / (time.perf_counter() - started)
        valve, free = results
        print(f"{name:<22} {valve.f1:>12.3f} / {valve.false_alarm_rate:>6.1%} "
              f"{free.false_alarm_rate:>17.1%} {gecco.f1:>7.3f} / {gecco.false_alarm_rate:>6.1%}"
              f" {rate:>11,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
