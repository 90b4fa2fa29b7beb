"""The live statistical detector: a device's reading is unusual when it is unusual both
against the device's usual readings and against its usual readings at this hour of the day.

Two T² detectors (``collector/detect/multivariate.py``) per device:

- ``plain``, over the fields themselves: their mean and covariance over the last days. It
  follows slow drift (a rain tank filling for days) but its ellipse is drawn around the
  whole day, so a daily cycle that is not a straight line (water demand: flow up and
  pressure down at the morning and evening peaks, more steeply than over the rest of the
  day) leaves the peaks outside it;
- ``daily``, over the fields' difference from an hour-of-day profile (each field's mean at
  this hour, learnt over the warm-up and then followed with a memory of about
  ``MEMORY_DAYS`` days). It sees the peaks as usual, but a slow drift, which no hour's mean
  follows within a day, is unusual to it.

The score is the smaller of the two (each over its own threshold, from its own tail and
the same false-alarm budget): an alarm needs both. On the simulated normal fleet each alone
raised false alarms (the plain one at the water meters' peaks, the daily one on rain tanks'
drift); together none (README, How good). A device faster than an hour's worth of readings
in its warm-up (SKAB's second-by-second pumps) has one profile for the hours it saw and the
warm-up's mean for the others, moving by the same slow rate: there the two agree.

State (cluster mode): both T² states and the profile, checked by :class:`DailyState`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from collector.detect.multivariate import MEMORY_DAYS, T2, T2State, plain_for_device


class DailyState(BaseModel):
    """A device's detector as a collector taking the device over receives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    plain: T2State
    daily: T2State
    profile: list[list[float]] = Field(min_length=24, max_length=24)
    rate: float = Field(gt=0, le=1)


class Daily:
    """T² over the fields and over their difference from the hour's usual; both must alarm."""

    __slots__ = ("_buffer", "_daily", "_n", "_plain", "_profile", "_rate", "_warmup", "dims")

    def __init__(self, plain: T2, daily: T2, readings_per_hour: float) -> None:
        self.dims = plain.dims
        self._plain, self._daily = plain, daily
        self._warmup = daily.warmup
        #: The profile's learning rate: about MEMORY_DAYS days of this hour's readings.
        self._rate = min(1.0, 1 / max(1.0, readings_per_hour * MEMORY_DAYS))
        self._profile: np.ndarray | None = None
        self._buffer: list[tuple[np.ndarray, int]] = []
        self._n = 0

    def update(self, x: np.ndarray, hour: int = 0) -> float:
        """Score one reading (the fields in a fixed order) taken at ``hour`` (0-23, local)."""
        h = int(hour) % 24
        score = self._plain.update(x)
        self._n += 1
        if self._profile is None:
            self._buffer.append((np.array(x, dtype=float), h))
            if self._n >= self._warmup:
                self._learn_profile()
            return 0.0
        usual = self._profile[h]
        apart = x - usual
        daily = self._daily.update(apart)
        if daily < 1.0:   # an unusual reading teaches neither model (see T2.update)
            usual += self._rate * apart
        return min(score, daily)

    def drivers(self) -> list[tuple[int, float]]:
        """The fields behind the last score (the plain model's: the difference from the
        device's usual), largest share first."""
        return self._plain.drivers()

    def _learn_profile(self) -> None:
        """Each hour's mean over the warm-up (the warm-up's mean for hours it did not see);
        the daily model then learns the warm-up's differences from it as its own warm-up."""
        data = np.vstack([x for x, _ in self._buffer])
        hours = np.array([h for _, h in self._buffer])
        profile = np.tile(data.mean(axis=0), (24, 1))
        for h in np.unique(hours):
            profile[h] = data[hours == h].mean(axis=0)
        self._profile = profile
        for x, h in self._buffer:
            self._daily.update(x - profile[h])
        self._buffer = []

    def state(self) -> dict[str, Any] | None:
        """Plain data another collector resumes from (:class:`DailyState`), or None while
        still in the warm-up."""
        plain, daily = self._plain.state(), self._daily.state()
        if self._profile is None or plain is None or daily is None:
            return None
        return DailyState(plain=T2State(**plain), daily=T2State(**daily),
                          profile=self._profile.tolist(), rate=self._rate).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> Daily:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote.
        """
        s = DailyState.model_validate(saved)
        plain, daily = T2.from_state(s.plain.model_dump()), T2.from_state(s.daily.model_dump())
        if plain.dims != daily.dims or any(len(row) != plain.dims for row in s.profile):
            raise ValueError("a state whose parts have fields of another number")
        det = cls(plain, daily, 1.0)
        det._rate, det._profile = s.rate, np.array(s.profile)
        det._n = det._warmup
        return det


def for_device(dims: int, readings_per_day: float, alerts_per_day: float,
               warmup: int | None = None) -> Daily:
    """The detector for one device, as the collector runs it live and ``sct detect replay``
    offline: two T² detectors with the live warm-up, smoothing, memory and budget
    (:func:`~collector.detect.multivariate.plain_for_device`)."""
    return Daily(plain_for_device(dims, readings_per_day, alerts_per_day, warmup),
                 plain_for_device(dims, readings_per_day, alerts_per_day, warmup),
                 readings_per_day / 24)
