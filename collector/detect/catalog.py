"""The detectors by name (DESIGN habit 9: an explicit dict, no discovery), and the composite
that most series use: outliers or level shifts, with a refractory period after an alarm so
one incident raises one alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from collector.detect import daily, multivariate
from collector.detect.stats import LevelShift, Profile, RobustOutlier, Surprise

#: The statistical false-alarm budget: one alert per device per 100 days on normal data.
ALERTS_PER_DAY = 1 / 100


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


#: Detectors over several fields of one device: built from the number of fields, the
#: device's readings per day and the false-alarm budget in alerts per day (which together
#: set the threshold), and a warm-up (None: the live one).
VECTOR_DETECTORS: dict[str, Callable[[int, float, float, int | None], VectorDetector]] = {
    "t2": daily.for_device,
    "t2-plain": multivariate.plain_for_device,
}
