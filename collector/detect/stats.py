"""Streaming statistical detectors: one reading at a time, constant memory and time.

Every detector is a small object per series with ``update(value, hour) -> score``. A score
of 1.0 or more means "anomalous"; the scale is the detector's own threshold, so one
threshold setting holds for every series of a kind.

- :class:`RobustOutlier`: distance from an exponentially weighted location, in units of an
  exponentially weighted mean absolute deviation (a streaming MAD). Values far out are
  clipped before they update the baseline, so a spike cannot drag the baseline with it.
  With ``daily=True`` it keeps one baseline per hour of the day, for series that follow a
  daily cycle (water demand, lamp power), and a global one for the first days.
- :class:`LevelShift`: a two-sided CUSUM of the standardized residual from a slow baseline:
  it accumulates small persistent deviations (a drift, a step) that no single reading shows.
- :class:`Profile`: learns location and scale over a warm-up, then adapts only on readings
  it does not flag, so a long anomaly keeps being flagged instead of becoming the new normal.

All of them are plain Python floats: at one reading a call, numpy's per-call overhead would
cost more than the arithmetic (see ``bench/detectors.py`` for the throughput).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826  # a normal distribution's sigma in MADs
MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2)  # ... and in mean absolute deviations


@dataclass(frozen=True, slots=True)
class OutlierParams:
    threshold: float = 6.0     # score 1.0 at this many (robust) sigmas
    alpha: float = 0.02        # weight of a new reading in the location
    beta: float = 0.02         # ... and in the scale
    warmup: int = 30           # readings before any score
    warmup_hourly: int = 5     # ... for an hour-of-day baseline (five days of hourly data)
    clip: float = 3.0          # a reading updates the baseline at most this many sigmas away
    floor: float = 1e-6        # smallest scale, relative to the location's magnitude


class RobustOutlier:
    """Outliers against an EWMA location and a streaming MAD, optionally per hour of day."""

    __slots__ = ("_daily", "_loc", "_n", "_p", "_scale")

    def __init__(self, params: OutlierParams = OutlierParams(), daily: bool = False) -> None:
        self._p = params
        self._daily = daily
        buckets = 25 if daily else 1  # [24] is the all-day baseline
        self._loc = [0.0] * buckets
        self._scale = [0.0] * buckets
        self._n = [0] * buckets

    def update(self, value: float, hour: int = 0) -> float:
        """Score ``value`` (1.0 = at the threshold), then learn from it."""
        score = self._update(value, len(self._loc) - 1, self._p.warmup)
        if self._daily:
            # Trust the hour's own baseline once it has seen a few days.
            hourly = self._update(value, hour, self._p.warmup_hourly)
            score = hourly if self._n[hour] > self._p.warmup_hourly else score
        return score

    def baseline(self) -> tuple[int, float, float]:
        """(readings seen, location, mean absolute deviation) of the all-day baseline."""
        last = len(self._loc) - 1
        return self._n[last], self._loc[last], self._scale[last]

    def _update(self, value: float, b: int, warmup: int) -> float:
        # Plain comparisons instead of min()/max(): this runs once a reading per series.
        p = self._p
        n = self._n[b]
        if n == 0:
            self._loc[b], self._n[b] = value, 1
            return 0.0
        loc, scale = self._loc[b], self._scale[b]
        sigma = scale * MEAN_ABS_TO_SIGMA
        floor = p.floor * ((loc if loc >= 0 else -loc) + 1.0)
        if sigma < floor:
            sigma = floor
        deviation = value - loc
        step = deviation
        score = 0.0
        if n >= warmup:
            score = (deviation if deviation >= 0 else -deviation) / (p.threshold * sigma)
            limit = p.clip * sigma
            if step > limit:
                step = limit
            elif step < -limit:
                step = -limit
        young = 1.0 / (n + 1)
        rate = p.alpha if p.alpha > young else young  # a plain mean while young
        self._loc[b] = loc + rate * step
        rate = p.beta if p.beta > young else young
        self._scale[b] = scale + rate * ((step if step >= 0 else -step) - scale)
        self._n[b] = n + 1
        return score


@dataclass(frozen=True, slots=True)
class ShiftParams:
    threshold: float = 8.0     # CUSUM alarm level, in sigmas
    drift: float = 0.5         # allowance k: deviations under k sigmas do not accumulate
    alpha: float = 0.002       # slow baseline
    warmup: int = 60


class LevelShift:
    """Two-sided CUSUM on residuals from a slow baseline: steps and drifts."""

    __slots__ = ("_base", "_high", "_low", "_p")

    def __init__(self, params: ShiftParams = ShiftParams()) -> None:
        self._p = params
        self._base = RobustOutlier(OutlierParams(alpha=params.alpha, beta=params.alpha * 5,
                                                 warmup=params.warmup, clip=2.0))
        self._high = 0.0
        self._low = 0.0

    def update(self, value: float, hour: int = 0) -> float:
        n, loc, scale = self._base.baseline()  # before this reading updates it
        self._base.update(value)
        if n < self._p.warmup:
            return 0.0
        sigma = max(scale * MEAN_ABS_TO_SIGMA, 1e-9 * (abs(loc) + 1.0))
        z = (value - loc) / sigma
        k = self._p.drift
        self._high = max(0.0, self._high + z - k)
        self._low = max(0.0, self._low - z - k)
        score = max(self._high, self._low) / self._p.threshold
        if score >= 1.0:
            self._high = self._low = 0.0  # alarm given; start counting afresh
        return score


@dataclass(frozen=True, slots=True)
class ProfileParams:
    threshold: float = 6.0     # sigmas of the learned profile
    warmup: int = 400          # readings that define normal
    alpha: float = 0.005       # adaptation, on readings well inside the profile only
    adapt_below: float = 1.0   # ... i.e. within this many sigmas
    smooth: float = 0.1        # smoothing of the distance over the last few readings


class Profile:
    """A learned normal range that anomalies do not move: flags for as long as they last."""

    __slots__ = ("_distance", "_m2", "_mean", "_n", "_p")

    def __init__(self, params: ProfileParams = ProfileParams()) -> None:
        self._p = params
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._distance = 0.0

    def update(self, value: float, hour: int = 0) -> float:
        p = self._p
        self._n += 1
        if self._n <= p.warmup:
            delta = value - self._mean  # Welford: mean and variance of the warm-up
            self._mean += delta / self._n
            self._m2 += delta * (value - self._mean)
            return 0.0
        dof = max(1, p.warmup - 1)
        sigma = max(math.sqrt(self._m2 / dof), 1e-9 * (abs(self._mean) + 1.0))
        z = abs(value - self._mean) / sigma
        self._distance += p.smooth * (z - self._distance)
        if z < p.adapt_below:
            variance = self._m2 / dof
            delta = value - self._mean
            self._mean += p.alpha * delta
            variance += p.alpha * (delta * delta - variance)
            self._m2 = variance * dof
        return self._distance / p.threshold


@dataclass(frozen=True, slots=True)
class SurpriseParams:
    threshold: float = 3.0     # standard deviations of the series' own usual surprise
    short: float = 0.3         # smoothing of the recent surprise (a few readings)
    long: float = 0.001        # memory of the usual surprise (about a thousand readings)
    refractory: int = 100      # readings kept quiet after an alarm: one incident, one alarm
    alpha: float = 0.01        # the outlier baseline of the readings (hour by hour)
    slow_alpha: float = 0.002  # ... and of their moving average, for slower changes
    smooth_input: float = 0.2  # the moving average's weight of a new reading
    warmup: int = 100


class Surprise:
    """Is the recent outlier score unusual *for this series*? (an anomaly-likelihood layer)

    Raw outlier scores mean different things on a calm and on a noisy series. This keeps the
    running mean and spread of a series' own raw scores and flags when the last few readings
    are together far above them, so noisy series need a bigger deviation than calm ones.
    Two raw scores feed it: the reading against its hour-of-day baseline (a spike), and a
    moving average of the readings against a slow baseline (a change of level or pattern).
    """

    __slots__ = ("_average", "_base", "_mean", "_n", "_p", "_quiet", "_recent", "_slow",
                 "_var")

    def __init__(self, params: SurpriseParams = SurpriseParams()) -> None:
        self._p = params
        self._base = RobustOutlier(OutlierParams(threshold=1.0, alpha=params.alpha,
                                                 beta=params.alpha, warmup=30), daily=True)
        self._slow = RobustOutlier(OutlierParams(threshold=1.0, alpha=params.slow_alpha,
                                                 beta=params.alpha, warmup=60))
        self._average: float | None = None
        self._recent = self._mean = self._var = 0.0
        self._n = self._quiet = 0

    def update(self, value: float, hour: int = 0) -> float:
        p = self._p
        raw = min(self._base.update(value, hour), 20.0)
        average = value if self._average is None else \
            self._average + p.smooth_input * (value - self._average)
        self._average = average
        raw = max(raw, min(self._slow.update(average), 20.0))
        self._n += 1
        self._recent += p.short * (raw - self._recent) if self._n > 1 else raw
        spread = math.sqrt(self._var)
        score = 0.0
        if self._n > p.warmup:
            score = (self._recent - self._mean) / (p.threshold * (spread + 1e-6))
        rate = max(p.long, 1.0 / self._n)
        delta = raw - self._mean
        self._mean += rate * delta
        self._var += rate * (delta * delta - self._var)
        if self._quiet > 0:
            self._quiet -= 1
            return min(score, 0.999)
        if score >= 1.0:
            self._quiet = p.refractory
        return max(0.0, score)
