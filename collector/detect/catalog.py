"""The detectors by name (DESIGN habit 9: an explicit dict, no discovery), and the composite
that most series use: outliers or level shifts, with a refractory period after an alarm so
one incident raises one alarm.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from collector.detect import daily, multivariate
from collector.detect.levels import Levels
from collector.detect.stats import LevelShift, Profile, RobustOutlier, Surprise

#: The statistical false-alarm budget: one alert per device per 100 days on normal data.
ALERTS_PER_DAY = 1 / 100

#: A device's first readings, whose median interval sets its reading rate and so its
#: detector's warm-up, smoothing, memory and budget: live (``DetectStage`` gathers them
#: before it builds the detector) as in ``sct detect replay`` (a file's first rows).
RATE_READINGS = 50


def readings_per_day(times_s: Iterable[float]) -> float:
    """Readings per day from the median interval between consecutive reading times
    (seconds, in order); 1,440 when no interval is known."""
    gaps = sorted(b - a for a, b in itertools.pairwise(times_s) if b > a)
    return 86_400 / gaps[len(gaps) // 2] if gaps else 1_440.0


class Detector(Protocol):
    def update(self, value: float, hour: int = 0) -> float: ...


class VectorDetector(Protocol):
    """A detector over all numeric fields of one device at once."""

    def update(self, x: np.ndarray, hour: int = 0) -> float: ...


class Combined:
    """The larger of an outlier score and a level-shift score, then quiet for a while."""

    __slots__ = ("_outlier", "_quiet", "_refractory", "_shift")

    def __init__(self, daily: bool = False, refractory: int = 0) -> None:
        self._outlier = RobustOutlier(daily=daily)
        self._shift = LevelShift()
        self._refractory = refractory
        self._quiet = 0

    def update(self, value: float, hour: int = 0) -> float:
        score = max(self._outlier.update(value, hour), self._shift.update(value, hour))
        if self._quiet > 0:
            self._quiet -= 1
            return min(score, 0.999)  # seen, but the incident is already raised
        if score >= 1.0:
            self._quiet = self._refractory
        return score


DETECTORS: dict[str, Callable[[], Detector]] = {
    "robust": RobustOutlier,
    "robust-daily": lambda: RobustOutlier(daily=True),
    "shift": LevelShift,
    "profile": Profile,
    "surprise": Surprise,
    "combined": lambda: Combined(refractory=0),
    "combined-daily": lambda: Combined(daily=True, refractory=0),
}


def for_device(dims: int, readings_per_day: float, alerts_per_day: float,
               warmup: int | None = None) -> daily.Daily | Levels:
    """The detector the collector runs live for one device (``t2``, also ``sct detect
    replay``'s default): the T² pair (``collector/detect/daily.py``) over two or more
    fields; over one field, where T² is only a z-score, the levels model
    (``collector/detect/levels.py``), with the same warm-up."""
    if dims == 1:
        # The levels model learns its warm-up's readings in order (their pairs): at most
        # MAX_WARMUP of them, not a day of a fast device's.
        return Levels(warmup or min(multivariate.MAX_WARMUP, multivariate.settings_for_device(
            readings_per_day, alerts_per_day)["warmup"]))
    return daily.for_device(dims, readings_per_day, alerts_per_day, warmup)


#: Detectors over several fields of one device: built from the number of fields, the
#: device's readings per day and the false-alarm budget in alerts per day (which together
#: set the threshold), and a warm-up (None: the live one).
VECTOR_DETECTORS: dict[str, Callable[[int, float, float, int | None], VectorDetector]] = {
    "t2": for_device,
    "t2-pair": daily.for_device,     # the pair even over one field (as before levels)
    "t2-plain": multivariate.plain_for_device,
}
