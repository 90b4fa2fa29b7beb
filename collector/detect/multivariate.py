"""One detector over all numeric fields of a device: a streaming Hotelling T² score with a
threshold the device's own score history and a false-alarm budget set.

Real faults move several fields of one device at once (a valve closing moves pressure, flow,
current and vibration together; a contamination moves chlorine, redox, conductivity and
turbidity together), and a move that is small in every field alone can be large against
the fields' usual covariance. So each device keeps:

- a mean and a covariance of its fields, learnt over a warm-up (``warmup`` readings, no
  alert meanwhile) and then followed with exponential forgetting (``forget``): drift is
  followed, not alarmed for ever. A reading that scores as an anomaly does not update them
  (the model must not learn the fault it is reporting);
- the tail of its own T² scores, peaks over threshold (as SPOT, Siffer et al. 2017): the
  scores above their 98th percentile are fitted with an exponential tail (their mean excess),
  and the alarm threshold is the score exceeded with probability ``p``, the false-alarm
  budget per reading (alerts per device per day over the device's readings per day). An
  operator sets the budget, not a number per series; the tail is the device's own, so heavy
  tails (real data) raise the threshold where a normal approximation would flood;
- an alarm that holds while the score stays above half its threshold (one incident, one
  alarm); an alarm that lasts ``relearn`` readings is taken for a new regime (another duty,
  another season) and learnt afresh, over a new warm-up;
- which fields drove a score (:meth:`T2.drivers`: each field's share of T²), for the alert.

A device that reports faster than every ``SMOOTH_S`` seconds is scored on the exponentially
weighted mean of its readings over about that long (``smooth`` readings), and its budget is
spent per such window, not per reading: a sustained shift too small to see in one noisy
reading is plain in the mean of thirty, and consecutive readings of a fast device are not
independent chances of a false alarm anyway. A device reporting every ``SMOOTH_S`` seconds or
slower is scored reading by reading.

Constant memory and time per reading (d fields: a d×d matrix, its inverse refreshed every
``refresh`` readings). The score returned is T² over the threshold: 1.0 or more alarms.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: The scores above this percentile of the warm-up's are the tail's sample.
TAIL_QUANTILE = 0.98

#: A score learnt into a tail adds at most this many of its mean excesses (see Tail).
WINSOR = 4.0

#: A fast device is scored on the mean of about this many seconds of its readings.
SMOOTH_S = 30.0

#: What the mean and covariance remember: about this many days of the device's readings
#: (forgetting 1 / (MEMORY_DAYS x readings per day)), forgetting at most MAX_FORGET a reading.
MEMORY_DAYS = 4
MAX_FORGET = 0.001

#: A fast device's recent spread (its smoothed readings' about their long-run mean)
#: remembers about this many of its smoothing windows, two minutes (see spread_forget) ...
SPREAD_WINDOWS = 4
#: ... and it is judged against this share of its days-long covariance and the rest of
#: its recent spread (see blended).
SPREAD_LONG = 0.2

#: Readings learnt before a device's first score (its statistical alerts muted meanwhile):
#: a day of readings, at least WARMUP. Of a longer day (a device reporting more often than
#: once a minute) the live pair keeps at most MAX_WARMUP, evenly spaced (warmup_stride).
WARMUP = 300
MAX_WARMUP = 1440


def warmup_stride(warmup: int) -> int:
    """Of a warm-up of ``warmup`` readings, every this many-th is kept: at most
    ``MAX_WARMUP`` of them, so a day of a device reporting every second (86,400 readings)
    costs the memory of a day of one reporting every minute."""
    return max(1, math.ceil(warmup / MAX_WARMUP))


def budget(alarms_per_day: float, readings_per_day: float) -> float:
    """The false-alarm probability per reading for a budget of alarms per day."""
    return min(0.5, max(1e-12, alarms_per_day / max(readings_per_day, 1.0)))


def settings_for_device(readings_per_day: float, alerts_per_day: float,
                        warmup: int | None = None) -> dict[str, Any]:
    """A device's T² settings from its reading rate: the same smoothing, warm-up, memory and
    budget for the live detector (``collector/detect/daily.py``) and ``t2-plain``.

    The warm-up covers a day of readings (at least ``WARMUP``; of more than ``MAX_WARMUP``
    the live pair keeps every ``warmup_stride``-th): water follows a daily cycle, and a
    model of the morning finds the evening unusual. (It was at most ``MAX_WARMUP`` readings:
    72 minutes of a device reporting every 3 s.) For the same
    reason the mean and covariance then remember about ``MEMORY_DAYS`` days of readings (a
    memory shorter than a day has forgotten the morning peak by the next morning). ``warmup``
    overrides the warm-up where a benchmark defines its own training part."""
    smooth = max(1, round(readings_per_day * SMOOTH_S / 86_400))
    if warmup is None:
        warmup = int(max(readings_per_day, WARMUP))
    return {"p": budget(alerts_per_day, readings_per_day / smooth), "warmup": warmup,
            "smooth": smooth, "forget": min(MAX_FORGET, 1 / (MEMORY_DAYS * readings_per_day))}


def spread_forget(forget: float, smooth: int) -> float:
    """What a device's recent spread forgets a reading: a fast device's (``smooth`` readings
    a window) remembers about ``SPREAD_WINDOWS`` of its windows; a slower device has none
    (its covariance's own ``forget``)."""
    return forget if smooth <= 1 else max(forget, 1.0 / (SPREAD_WINDOWS * smooth))


def blended(cov: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """What a fast device is judged against: ``SPREAD_LONG`` of its days-long covariance,
    the rest its recent spread (both about the long-run mean; stacks of them too).

    Why: a fast device is a machine (SKAB's pumps and valves, a reading a second) whose
    fields drift within minutes as it warms up. Against the covariance of days alone, a
    drift in one field (SKAB's temperature: 3-18 of the warm-up's spreads in minutes) made
    most of T², raised both tails with it, and a fault in another field (a valve closing:
    the flow) then stayed under the raised limits. The recent spread widens a drifting
    field as it drifts (its deviations are from the long-run mean), so the drift stops
    counting against the other fields; readings that alarm are not learnt, so a fault does
    not widen it. The days-long share keeps every direction the device has moved in over
    days in view: the recent spread alone knows only the last two minutes' directions, and
    a fast water meter then alarmed at its usual morning rise (README, How good: SKAB
    valve1 0.73 → 0.80; the recent spread alone 0.80 too, but a simulated fleet of water
    devices reporting every 3 or 15 s raised several times the false alarms)."""
    out: np.ndarray = SPREAD_LONG * cov + (1.0 - SPREAD_LONG) * recent
    return out


def plain_for_device(dims: int, readings_per_day: float, alerts_per_day: float,
                     warmup: int | None = None) -> T2:
    """One T² detector for one device with the live settings (:func:`settings_for_device`);
    the live detector is a pair (``collector/detect/daily.py``)."""
    return T2(dims, **settings_for_device(readings_per_day, alerts_per_day, warmup))


def tail_of(scores: np.ndarray) -> tuple[float, float, float, float]:
    """The tail fitted to a warm-up's T² scores: its start (their ``TAIL_QUANTILE``), the
    number of scores, of those above the start, and the sum of their excesses over it."""
    t = float(np.quantile(scores, TAIL_QUANTILE))
    over = scores[scores > t]
    return t, float(len(scores)), float(len(over)), float((over - t).sum())


def ridged(cov: np.ndarray) -> np.ndarray:
    """A covariance (or a stack of them) with a thousandth of each field's variance (and
    1e-12) added to its diagonal: positive definite even with a constant field."""
    scale, floor = _ridge(cov.shape[-1])
    out: np.ndarray = cov * scale + floor   # two operations: a ridge built per call cost more
    return out


def inverse(cov: np.ndarray) -> np.ndarray:
    """The inverse of a covariance (or of a stack of them), :func:`ridged`."""
    try:
        # The ridged covariance is positive definite: a plain inverse, several times cheaper
        # than the pseudo-inverse's SVD (it was half of a reading's cost).
        return np.linalg.inv(ridged(cov))
    except np.linalg.LinAlgError:
        return np.linalg.pinv(ridged(cov))


@functools.cache
def _ridge(d: int) -> tuple[np.ndarray, np.ndarray]:
    """What multiplies a d×d covariance and what is added to it to ridge it."""
    return np.ones((d, d)) + np.eye(d) * 1e-3, np.eye(d) * 1e-12


@functools.cache
def fold_weights(forget: float, k: int) -> np.ndarray:
    """The weights of k readings folded at once, oldest first, as k exponential-forgetting
    steps would have given them."""
    return forget * (1 - forget) ** np.arange(k - 1, -1, -1)


def folded(spread: np.ndarray, rows: np.ndarray, forget: float) -> np.ndarray:
    """A spread about a mean (a covariance, a fast device's recent spread) after the k
    deviations ``rows`` (oldest first) are folded in at once, forgetting ``forget`` a
    reading, as k exponential-forgetting steps would have left it."""
    k = len(rows)
    out: np.ndarray = (1 - forget) ** k * spread + (rows.T * fold_weights(forget, k)) @ rows
    return out


class T2State(BaseModel):
    """A device's T² detector as a collector taking the device over receives it (cluster
    mode): plain numbers checked on the way in, never code (not a pickle)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dims: int = Field(ge=1, le=64)
    p: float = Field(gt=0, le=0.5)
    warmup: int = Field(ge=2)
    forget: float = Field(gt=0, lt=1)
    refresh: int = Field(ge=1, le=10_000)
    relearn: int = Field(ge=1)
    smooth: int = Field(ge=1)
    smoothed: list[float] | None
    n: int = Field(ge=0)
    mean: list[float]
    cov: list[list[float]]
    #: A fast device's recent spread (None: a slower device, or a state from before it,
    #: which starts it as ``cov``).
    recent: list[list[float]] | None = None
    alarm: bool
    alarmed: int = Field(ge=0)
    t: float
    n_seen: float = Field(ge=0)
    n_over: float = Field(ge=0)
    excess: float = Field(ge=0)


def checked_state(saved: object) -> T2State:
    """A T² state as another collector wrote it, checked.

    Raises:
        ValueError: not a state this version wrote (a field missing, of the wrong type or
            shape, or not finite; or still in its warm-up).
    """
    s = T2State.model_validate(saved)   # a pydantic ValidationError is a ValueError
    if len(s.mean) != s.dims or len(s.cov) != s.dims or any(
            len(row) != s.dims for row in s.cov) or (
            s.smoothed is not None and len(s.smoothed) != s.dims) or (
            s.recent is not None and (len(s.recent) != s.dims or any(
                len(row) != s.dims for row in s.recent))):
        raise ValueError(f"a state of {s.dims} fields with vectors of another length")
    if s.n <= s.warmup:
        raise ValueError("a state still in its warm-up (never written)")
    return s


def drivers_of(d: np.ndarray, inv: np.ndarray) -> list[tuple[int, float]]:
    """Each field's share of the T² of deviation ``d`` under ``inv``, largest first."""
    parts = d * (inv @ d)
    total = float(parts.sum()) or 1.0
    return sorted(((i, float(p) / total) for i, p in enumerate(parts)), key=lambda item: -item[1])


#: What :meth:`Tail.judge` returns when an alarm has lasted ``relearn`` readings.
NEW_REGIME = -1.0


class Tail:
    """One T² model's threshold and alarm, from its own scores (peaks over threshold).

    The tail starts at ``t`` (a T² score, the warm-up's ``TAIL_QUANTILE``); above it, an
    exponential tail of mean excess (the sum of excesses over the number above). Counted with
    exponential forgetting: of the scores learnt, of those above ``t`` and of their excesses.
    The tail rests on about one reading in fifty, so it is remembered ten times longer than
    the mean and covariance (``forget / 10`` a reading): the fit rests on hundreds of
    exceedances, not a handful. It follows the scores reading by reading, which real data
    needs (README: a limit refreshed only every 25 readings took SKAB's false alarms to 46 %).

    A score learnt adds at most ``WINSOR`` mean excesses to the sum of excesses (the mean
    excess is winsorised). Without it, a fault that builds over tens of readings (a valve
    closing) raised the limit it was judged by: each reading a little over the last and
    under the limit, each learnt, each lifting the mean excess by most of its own excess (on
    SKAB's valve1 file 1 the limit went from 165 to 1,900 while the fault's T² rose from 100
    to 800, and nothing was raised). Winsorised, a reading lifts the mean excess by at most
    ``WINSOR - 1`` over n of it (n: the exceedances the tail rests on), so a build-up faster
    than that crosses the limit, while a stationary exponential tail loses a fiftieth of
    its mean (exceeding four means once in fifty-five). Seven of valve1's sixteen faults
    raised nothing before, five now; its F1 went 0.65 → 0.73 (README, How good).

    The counts are kept scaled by ``_scale``, which grows by 1 / (1 - forget / 10) a reading:
    a reading adds the scale instead of every count being multiplied down, and the limit,
    made of their ratios, is the same. Divided out when it grows large and for the state.
    """

    __slots__ = (
        "_excess",
        "_grow",
        "_n_over",
        "_n_seen",
        "_scale",
        "alarm",
        "alarmed",
        "p",
        "relearn",
        "t",
    )

    def __init__(self, p: float, forget: float, relearn: int) -> None:
        self.p, self.relearn = p, relearn
        self._grow = 1 / (1 - forget / 10)
        self.alarm, self.alarmed = False, 0
        self.t = self._n_seen = self._n_over = self._excess = 0.0
        self._scale = 1.0

    def fit(self, scores: np.ndarray) -> None:
        """Start from a warm-up's scores."""
        self.t, self._n_seen, self._n_over, self._excess = tail_of(scores)
        self._scale = 1.0

    def limit(self) -> float:
        """The T² exceeded with probability ``p``: an exponential tail from ``t`` and the
        mean excess over it (peaks over threshold, shape 0); infinite before a first
        exceedance. Ratios of the counts only, so their scale does not matter."""
        n_over = self._n_over
        if n_over < self._scale:
            return math.inf
        spread = math.log(n_over / (self.p * self._n_seen))
        return self.t + self._excess / n_over * spread if spread > 0.0 else self.t

    def judge(self, t2: float) -> float:
        """A T² over the limit: 1.0 or more alarms (an alarm holds while the score stays
        above half its limit: one incident, one alarm); below 1.0 the reading is usual and
        the tail learns it; ``NEW_REGIME`` when an alarm has lasted ``relearn`` readings (the
        owner learns afresh: another duty, another season)."""
        # limit(), inlined: a call per reading and model cost the pair 5 %.
        n_over = self._n_over
        if n_over < self._scale:    # before a first exceedance: no tail to judge by yet
            score, most = 0.0, math.inf
        else:
            mean = self._excess / n_over
            spread = math.log(n_over / (self.p * self._n_seen))
            score = t2 / (self.t + mean * spread if spread > 0.0 else self.t)
            most = WINSOR * mean if mean > 0.0 else math.inf
        alarm = self.alarm
        if score >= (0.5 if alarm else 1.0):
            self.alarm = True
            self.alarmed += 1
            if self.alarmed > self.relearn:
                self.alarm, self.alarmed = False, 0
                return NEW_REGIME
            return score if score > 1.0 else 1.0
        if alarm:
            self.alarm, self.alarmed = False, 0
        scale = self._scale = self._scale * self._grow
        self._n_seen += scale
        if t2 > self.t:
            self._n_over += scale
            over = t2 - self.t
            self._excess += scale * (over if over < most else most)
        if scale > 1e100:
            self._rescale()
        return score if score < 0.999 else 0.999

    def _rescale(self) -> None:
        c, self._scale = self._scale, 1.0
        self._n_seen, self._n_over, self._excess = (
            self._n_seen / c, self._n_over / c, self._excess / c)

    def state(self) -> dict[str, Any]:
        """The tail's part of a :class:`T2State`."""
        self._rescale()
        return {"alarm": self.alarm, "alarmed": self.alarmed, "t": self.t,
                "n_seen": self._n_seen, "n_over": self._n_over, "excess": self._excess}

    def resume(self, s: T2State) -> None:
        """The tail a :class:`T2State` describes."""
        self.alarm, self.alarmed, self.t = s.alarm, s.alarmed, s.t
        self._n_seen, self._n_over, self._excess = s.n_seen, s.n_over, s.excess
        self._scale = 1.0


class T2:
    """Streaming T² over ``dims`` fields with a self-calibrating threshold (:class:`Tail`).

    The per-reading path is a subtraction, a matrix-vector product, a dot product and the
    tail's few floats: the readings learnt are kept in a small block (``refresh`` rows) and
    folded into the mean and covariance at once when it is full, when the inverse is
    refreshed. Folding k readings with the weights k forgetting steps give them differs from
    learning them one by one only in the order of ``forget`` squared.
    """

    __slots__ = ("_block", "_cov", "_forget", "_inv", "_k", "_last", "_mean", "_n", "_p",
                 "_recent", "_refresh", "_relearn", "_smooth", "_smoothed", "_spread", "_tail",
                 "_warm", "_warmup", "dims")

    def __init__(self, dims: int, p: float, warmup: int = WARMUP, forget: float = 0.001,
                 refresh: int = 25, relearn: int = 1440, smooth: int = 1) -> None:
        self.dims = dims
        self._smooth = 1.0 / smooth
        self._smoothed: np.ndarray | None = None
        self._p = p
        self._warmup = warmup
        self._forget = forget
        #: A fast device's recent spread (blended) and what it forgets; None when slower.
        self._spread = spread_forget(forget, smooth)
        self._recent: np.ndarray | None = None
        self._refresh = refresh
        self._relearn = relearn
        self._n = 0
        self._mean: np.ndarray = np.zeros(dims)
        self._cov: np.ndarray = np.zeros((dims, dims))
        self._inv: np.ndarray = np.eye(dims)
        self._last: np.ndarray = np.zeros(dims)
        self._warm: list[np.ndarray] = []
        self._block: np.ndarray = np.zeros((refresh, dims))
        self._k = 0
        self._tail = Tail(p, forget, relearn)

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        saved = state[1]
        for name, value in saved.items():
            if name in self.__slots__:
                setattr(self, name, value)
        # A snapshot from before smoothing and the learning block: it scored unsmoothed and
        # learnt reading by reading (nothing pending).
        if "_smooth" not in saved:
            self._smooth, self._smoothed = 1.0, None
        if "_spread" not in saved:     # ... and from before a fast device's recent spread
            self._spread = spread_forget(self._forget, round(1 / self._smooth))
        if "_recent" not in saved:
            past = self._smooth < 1.0 and self._n > self._warmup
            self._recent = self._cov.copy() if past else None
        if "_block" not in saved:
            self._block, self._k = np.zeros((self._refresh, self.dims)), 0
        if "_tail" not in saved:       # ... and from before the tail was an object of its own
            self._tail = Tail(self._p, self._forget, self._relearn)
            self._tail.resume(T2State.model_construct(**{
                name: saved[f"_{name}"]
                for name in ("alarm", "alarmed", "t", "n_seen", "n_over", "excess")}))

    @property
    def warmup(self) -> int:
        """Readings learnt before the first score."""
        return self._warmup

    def update(self, x: np.ndarray, hour: int = 0) -> float:
        """Score one reading (a vector of the fields, in a fixed order); ``hour`` is not
        used (the call is the daily detector's)."""
        if self._smooth < 1.0:
            if self._smoothed is None:
                self._smoothed = np.array(x, dtype=float)
            else:
                # A new array, not in place: the warm-up keeps the vectors it is given.
                self._smoothed = self._smoothed + self._smooth * (x - self._smoothed)
            x = self._smoothed
        self._n += 1
        if self._n <= self._warmup:
            self._warm.append(np.asarray(x, dtype=float))
            if self._n == self._warmup:
                self._learn_warmup()
            return 0.0
        d = x - self._mean
        self._last = d
        t2 = float(d.dot(self._inv.dot(d)))
        score = self._tail.judge(t2)
        if score == NEW_REGIME:     # learnt afresh, muted meanwhile
            self._n, self._k = 0, 0
            return 0.0
        if score < 1.0:
            self._learn(d)
        return score

    def state(self) -> dict[str, Any] | None:
        """What another collector needs to resume this device (:class:`T2State`, JSON-able),
        or None while it is still in its warm-up (the next collector starts that again)."""
        if self._n <= self._warmup:
            return None
        if self._k:
            self._fold()
        return T2State(
            dims=self.dims, p=self._p, warmup=self._warmup, forget=self._forget,
            refresh=self._refresh, relearn=self._relearn, smooth=round(1 / self._smooth),
            smoothed=None if self._smoothed is None else self._smoothed.tolist(),
            n=self._n, mean=self._mean.tolist(), cov=self._cov.tolist(),
            recent=None if self._recent is None else self._recent.tolist(),
            **self._tail.state()).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> T2:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote (a field missing, of the wrong type
                or shape, or not finite).
        """
        s = checked_state(saved)
        det = cls(s.dims, s.p, s.warmup, s.forget, s.refresh, s.relearn, s.smooth)
        det._smoothed = None if s.smoothed is None else np.array(s.smoothed)
        det._n = s.n
        det._mean, det._cov = np.array(s.mean), np.array(s.cov)
        if s.smooth > 1:
            det._recent = np.array(s.recent if s.recent is not None else s.cov)
        det._tail.resume(s)
        det._invert()
        return det

    def limit(self) -> float:
        """The T² exceeded with probability ``p``."""
        return self._tail.limit()

    def drivers(self) -> list[tuple[int, float]]:
        """The fields behind the last score, largest share first: (index, share of T²)."""
        return drivers_of(self._last, self._inv)

    def settings(self) -> dict[str, Any]:
        """The arguments this detector was built with."""
        return {"dims": self.dims, "p": self._p, "warmup": self._warmup, "forget": self._forget,
                "refresh": self._refresh, "relearn": self._relearn,
                "smooth": round(1 / self._smooth)}

    def _learn_warmup(self) -> None:
        data = np.vstack(self._warm)
        self._warm = []
        self._mean = data.mean(axis=0)
        self._cov = np.cov(data, rowvar=False).reshape(self.dims, self.dims)
        self._recent = self._cov.copy() if self._smooth < 1.0 else None
        self._invert()
        centred = data - self._mean
        scores = np.einsum("ij,jk,ik->i", centred, self._inv, centred)
        self._tail.fit(scores)

    def _learn(self, d: np.ndarray) -> None:
        self._block[self._k] = d
        self._k += 1
        if self._k == self._refresh:
            self._fold()

    def _fold(self) -> None:
        """The block into the mean and covariance (deviations from the mean they were
        scored against), and a fast device's recent spread; then a fresh inverse."""
        k, a = self._k, self._forget
        block, w = self._block[:k], fold_weights(a, k)
        self._mean += w @ block
        self._cov = folded(self._cov, block, a)
        if self._recent is not None:
            self._recent = folded(self._recent, block, self._spread)
        self._k = 0
        self._invert()

    def _invert(self) -> None:
        self._inv = inverse(self._cov if self._recent is None else
                            blended(self._cov, self._recent))
