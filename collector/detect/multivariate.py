"""One detector over all numeric fields of a device: a streaming Hotelling T² score with a
threshold the device's own score history sets.

Real faults move several fields of one device at once (a valve closing moves pressure, flow,
current and vibration together; a contamination moves chlorine, redox, conductivity and
turbidity together), and a move that is small in every field alone can be large against
the fields' usual covariance. So each device keeps:

- a mean and a covariance of its fields, learnt over a warm-up (``warmup`` readings, no
  alert meanwhile) and then followed with exponential forgetting (``forget``): drift and
  regime changes are re-learnt, not alarmed for ever. A reading that scores as an anomaly
  does not update them (the model must not learn the fault it is reporting);
- the distribution of its own scores: the mean and spread of ``(T²)^(1/3)`` over normal
  readings, followed the same way (the cube root of a chi-squared variable is close to
  normal: Wilson-Hilferty; the logarithm's long left tail made thresholds far too high).
  The alarm threshold is ``(mu + z·sigma)³``, with ``z`` set by a false-alarm budget (a
  probability per reading, from alerts per device per day and the device's reading rate),
  not a magic number per series;
- an alarm that holds while the score stays above half its threshold (one incident, one
  alarm); an alarm that lasts ``relearn`` readings is taken for a new regime and learnt
  afresh (a new warm-up);
- which fields drove a score (:meth:`T2.drivers`: each field's share of T²), for the alert.

Constant memory and time per reading (d fields: a d×d matrix, its inverse refreshed every
``refresh`` readings). The score returned is T² over the threshold: 1.0 or more alarms.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def z_for(alarms_per_day: float, readings_per_day: float) -> float:
    """The one-sided normal quantile for a false-alarm budget per reading."""
    p = min(0.5, max(1e-12, alarms_per_day / max(readings_per_day, 1.0)))
    return NormalDist().inv_cdf(1.0 - p)


class T2:
    """Streaming T² over ``dims`` fields with a self-calibrating threshold."""

    __slots__ = (
        "_alarm",
        "_alarmed",
        "_cov",
        "_forget",
        "_inv",
        "_last",
        "_mean",
        "_n",
        "_refresh",
        "_relearn",
        "_root_m",
        "_root_v",
        "_since",
        "_warm",
        "_warmup",
        "_z",
        "dims",
    )

    def __init__(self, dims: int, warmup: int = 300, forget: float = 0.001,
                 z: float = 4.0, refresh: int = 25, relearn: int = 1440) -> None:
        self.dims = dims
        self._warmup = warmup
        self._forget = forget
        self._z = z
        self._refresh = refresh
        self._n = 0
        self._mean: np.ndarray = np.zeros(dims)
        self._cov: np.ndarray = np.zeros((dims, dims))
        self._inv: np.ndarray = np.eye(dims)
        self._warm: list[np.ndarray] = []
        self._root_m = 0.0
        self._root_v = 1.0
        self._since = 0
        self._alarm = False
        self._alarmed = 0
        self._relearn = relearn
        self._last: np.ndarray = np.zeros(dims)

    def update(self, x: np.ndarray) -> float:
        """Score one reading (a vector of the fields, in a fixed order)."""
        self._n += 1
        if self._n <= self._warmup:
            self._warm.append(np.asarray(x, dtype=float))
            if self._n == self._warmup:
                self._learn_warmup()
            return 0.0
        d = x - self._mean
        self._last = d
        t2 = float(d @ self._inv @ d)
        root = t2 ** (1 / 3)
        limit = self._root_m + self._z * math.sqrt(self._root_v)
        score = (root / limit) ** 3 if limit > 0 else 0.0
        # Hysteresis: an alarm holds while the score stays above half its threshold.
        self._alarm = score >= (0.5 if self._alarm else 1.0)
        self._alarmed = self._alarmed + 1 if self._alarm else 0
        if self._alarmed > self._relearn:
            # Not a fault any more but a new regime (another duty, another season):
            # learnt afresh over a new warm-up, muted meanwhile.
            self._n, self._alarm, self._alarmed = 0, False, 0
            return 0.0
        if not self._alarm:
            self._follow(d, root)
        return max(score, 1.0) if self._alarm else min(score, 0.999)

    def drivers(self) -> list[tuple[int, float]]:
        """The fields behind the last score, largest share first: (index, share of T²)."""
        parts = self._last * (self._inv @ self._last)
        total = float(parts.sum()) or 1.0
        return sorted(((i, float(p) / total) for i, p in enumerate(parts)),
                      key=lambda item: -item[1])

    def _learn_warmup(self) -> None:
        data = np.vstack(self._warm)
        self._warm = []
        self._mean = data.mean(axis=0)
        # A ridge of a small share of each field's variance keeps constant fields invertible.
        self._cov = np.cov(data, rowvar=False).reshape(self.dims, self.dims)
        self._invert()
        centred = data - self._mean
        roots = np.cbrt(np.einsum("ij,jk,ik->i", centred, self._inv, centred))
        self._root_m = float(np.median(roots))
        # A robust spread (MAD as a standard deviation): the warm-up may hold outliers.
        self._root_v = float((1.4826 * np.median(np.abs(roots - self._root_m))) ** 2) or 1.0

    def _follow(self, d: np.ndarray, root: float) -> None:
        a = self._forget
        self._mean += a * d
        self._cov = (1 - a) * self._cov + a * np.outer(d, d)
        delta = root - self._root_m
        self._root_m += a * delta
        self._root_v = (1 - a) * self._root_v + a * delta * delta
        self._since += 1
        if self._since >= self._refresh:
            self._invert()

    def _invert(self) -> None:
        self._since = 0
        ridge = np.diag(np.maximum(np.diag(self._cov), 1e-12)) * 1e-3 + np.eye(self.dims) * 1e-12
        self._inv = np.linalg.pinv(self._cov + ridge)
