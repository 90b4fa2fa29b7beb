"""The live statistical detector: a device's reading is unusual when it is unusual both
against the device's usual readings and against its usual readings at this hour of the day.

Two T² models (the method of ``collector/detect/multivariate.py``) per device, over two
views of each reading:

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

Cost: both models are scored in one pass, which is what a reading costs (issue 14 asks 4 µs):
the two views' deviations are one 2×d array (the reading less a per-hour offset: nothing
and the plain mean; the hour's usual and the daily mean), both T² come out of one product
with a block-diagonal matrix of the two inverses, and what the models learn (their means,
covariances and the profile) is folded in blocks of ``refresh`` readings, when both
inverses are refreshed in one call. Only each model's tail and alarm are followed reading
by reading, in plain Python floats. Delaying the profile's learning to the fold differs from
learning reading by reading only in the order of its rate squared.

State (cluster mode): each model as a :class:`~collector.detect.multivariate.T2State`, and
the profile, checked by :class:`DailyState`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from collector.detect.multivariate import (
    MEMORY_DAYS,
    NEW_REGIME,
    T2,
    T2State,
    Tail,
    blended,
    checked_state,
    drivers_of,
    fold_weights,
    folded,
    inverse,
    ridged,
    settings_for_device,
    spread_forget,
    warmup_stride,
)

#: Readings learnt between two folds. A fold (the deviations, means and covariances, the
#: profile, two Cholesky factors and their inverses) costs about fifteen readings' scoring;
#: spread over a hundred it is a tenth of a reading's cost (over 25, as one T² folds, it
#: was a third). A hundred minutes is a fiftieth of a minute device's memory.
REFRESH = 100

#: The two models, as indices of their rows.
PLAIN, DAILY = 0, 1
VIEWS = (PLAIN, DAILY)


class DailyState(BaseModel):
    """A device's detector as a collector taking the device over receives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    plain: T2State
    daily: T2State
    profile: list[list[float]] = Field(min_length=24, max_length=24)
    rate: float = Field(gt=0, le=1)


class Daily:
    """T² over the fields and over their difference from the hour's usual; both must alarm.

    Each model's settings are a T²'s (:class:`~collector.detect.multivariate.T2`): warm-up,
    forgetting, refresh, relearning after a long alarm, smoothing; both share them, and each
    has its own :class:`~collector.detect.multivariate.Tail` (threshold and alarm).
    """

    __slots__ = ("_blocks", "_buffer", "_centre", "_cov", "_direct", "_forget", "_hours",
                 "_last", "_mean", "_n", "_only", "_recent", "_refresh", "_relearning", "_rows",
                 "_shift", "_smooth", "_smoothed", "_split", "_spread", "_started", "_stride",
                 "_tails", "_warm", "_warmup", "_whiten", "dims", "rate")

    def __init__(self, dims: int, p: float, warmup: int, forget: float = 0.001,
                 refresh: int = REFRESH, relearn: int = 1440, smooth: int = 1,
                 readings_per_hour: float = 60.0) -> None:
        self.dims = d = dims
        self._warmup, self._forget, self._refresh = warmup, forget, refresh
        #: Of a warm-up longer than MAX_WARMUP readings (a day of a device reporting more
        #: often than once a minute), every stride-th reading is kept.
        self._stride = warmup_stride(warmup)
        #: A fast device's recent spread per model (2×d×d; multivariate.blended) and what it
        #: forgets a reading; None for a slower device.
        self._spread = spread_forget(forget, smooth)
        self._recent: np.ndarray | None = None
        #: A fast device is judged on the exponentially weighted mean of each view of its
        #: readings (2×d: the reading, and its difference from the hour's usual).
        self._smooth = 1.0 / smooth
        self._smoothed: np.ndarray | None = None
        #: The profile's learning rate: about MEMORY_DAYS days of this hour's readings.
        self.rate = min(1.0, 1 / max(1.0, readings_per_hour * MEMORY_DAYS))
        #: The first warm-up's readings and hours, until the profile is learnt from them.
        self._buffer: list[tuple[np.ndarray, int]] = []
        #: What each view takes from a reading at each hour (24×2×d): nothing for the plain
        #: one, the hour's usual (the profile) for the daily one; None until the warm-up ends.
        self._shift: np.ndarray | None = None
        #: Past the first warm-up and not smoothed: the reading is scored as it is (else its
        #: smoothed views are).
        self._direct = False
        self._mean = np.zeros((2, d))
        self._cov = np.zeros((2, d, d))
        #: Both models' whitening maps stacked (2d×d; W'W is a model's inverse), and each
        #: hour's image of what the views take away (24×2d): W·reading less the hour's row
        #: is both models' whitened deviations, whose squares sum to their T².
        self._whiten = np.zeros((2 * d, d))
        self._centre = np.zeros((24, 2 * d))
        #: The two whitening maps as one block-diagonal matrix (transposed), for the smoothed
        #: views: both deviations, flattened, times it are both whitened deviations.
        self._blocks = np.zeros((2 * d, 2 * d))
        #: Sums a 2d-vector's halves (the two T² from the squares of their halves).
        self._split = np.zeros((2 * d, 2))
        self._split[:d, PLAIN] = self._split[d:, DAILY] = 1.0
        #: The last reading scored (a fast device's: its smoothed views).
        self._last = np.zeros(d)
        self._tails = (Tail(p, forget, relearn), Tail(p, forget, relearn))
        #: Readings seen, and the reading each model (re)started at.
        self._n = 0
        self._started = [0, 0]
        #: A model learning afresh (a new regime) gathers its warm-up here; None: it scores.
        self._warm: list[list[np.ndarray] | None] = [None, None]
        self._relearning = False
        #: Readings learnt since the last fold and their hours (their deviations are taken
        #: at the fold: the means and profile do not move in between); the rows learnt by
        #: one model only (row: that model; None: neither, since dropped).
        self._rows: list[np.ndarray] = []
        self._hours: list[int] = []
        self._only: dict[int, int | None] = {}

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Pickled with the readings it holds (the warm-up's, those since the last fold, a
        relearning model's) stacked as one array each, not one array a reading: in a
        device's first day that is most of its state, and pickling an array a reading cost
        the snapshot (taken on the collector's event loop) about ten times as long."""
        saved = {name: getattr(self, name) for name in self.__slots__}
        if self._buffer:
            saved["_buffer"] = (np.stack([x for x, _ in self._buffer]),
                                [h for _, h in self._buffer])
        if self._rows:
            saved["_rows"] = np.stack(self._rows)
        saved["_warm"] = [np.stack(w) if w else w for w in self._warm]
        return None, saved

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        saved = state[1]
        if "_plain" in saved:
            # A snapshot from when the pair was two T2 objects: resumed from their states.
            self._resume_two(saved)
            return
        for name, value in saved.items():
            setattr(self, name, value)
        if "_spread" not in saved:     # from before a fast device's recent spread
            self._spread = spread_forget(self._forget, round(1 / self._smooth))
        if "_recent" not in saved:
            past = self._smooth < 1.0 and self._shift is not None
            self._recent = self._cov.copy() if past else None
        if "_stride" not in saved:     # warm-ups were at most MAX_WARMUP readings, all kept
            self._stride = warmup_stride(self._warmup)
        # Stacked by __getstate__ (a snapshot from before keeps its lists as they were).
        if isinstance(self._buffer, tuple):
            xs, hours = self._buffer
            self._buffer = list(zip(xs, hours, strict=True))
        if isinstance(self._rows, np.ndarray):
            self._rows = list(self._rows)
        self._warm = [list(w) if isinstance(w, np.ndarray) else w for w in self._warm]

    @property
    def warmup(self) -> int:
        """Readings learnt before the first score."""
        return self._warmup

    def update(self, x: np.ndarray, hour: int = 0) -> float:
        """Score one reading (the fields in a fixed order; an array the caller does not
        change afterwards: it is kept until the next fold) taken at ``hour`` (0-23, local):
        the smaller of the two models' T² over its threshold; 1.0 or more alarms."""
        h = int(hour) % 24
        self._n += 1
        if self._direct:        # the usual device: past its warm-up, not smoothed
            r = x
            u = self._whiten.dot(x) - self._centre[h]
        else:
            views = self._smoothed_views(x, h)
            if views is None:
                return 0.0
            r = views
            u = (views - self._mean).ravel().dot(self._blocks)
        t2p, t2d = (u * u).dot(self._split).tolist()
        self._last = r
        if self._relearning:
            sp, sd = self._judge_relearning(r, h, t2p, t2d)
        else:
            plain, daily = self._tails
            sp, sd = plain.judge(t2p), daily.judge(t2d)
            if 0.0 <= sp < 1.0 and 0.0 <= sd < 1.0:      # usual to both: both learn it
                self._rows.append(r)
                self._hours.append(h)
                if len(self._rows) == self._refresh:
                    self._fold()
                return sp if sp < sd else sd
            if sp == NEW_REGIME or sd == NEW_REGIME:
                self._new_regime(sp == NEW_REGIME, sd == NEW_REGIME)
        return self._learn_some(r, h, sp, sd)

    def _smoothed_views(self, x: np.ndarray, h: int) -> np.ndarray | None:
        """For a device in its first warm-up, None (the reading is gathered); for a fast
        device, each view's exponentially weighted mean (the reading, and its difference
        from the hour's usual, each smoothed: the step between two hours' usuals is
        smoothed over the same 30 s as the readings)."""
        if self._shift is None:
            kept = np.array(x, dtype=float)
            if self._stride > 1 and self._smooth < 1.0:
                # Not every reading is kept: a fast device's are smoothed as they come
                # (the plain view; the daily one is their difference from the hour's usual).
                if self._smoothed is not None:
                    kept = self._smoothed + self._smooth * (kept - self._smoothed)
                self._smoothed = kept
            if self._n % self._stride == 0:
                self._buffer.append((kept, h))
                if len(self._buffer) >= self._warmup // self._stride:
                    self._learn_profile()
            return None
        assert self._smoothed is not None
        # A new array, not in place: the block keeps the views it is given.
        self._smoothed = self._smoothed + self._smooth * (x - self._shift[h] - self._smoothed)
        return self._smoothed

    def _learn_some(self, r: np.ndarray, h: int, sp: float, sd: float) -> float:
        """A reading unusual to a model (or while one learns afresh): only a model to which
        it is usual learns it; an unusual reading teaches neither."""
        learn_p, learn_d = 0.0 <= sp < 1.0, 0.0 <= sd < 1.0
        if learn_p or learn_d:
            if not (learn_p and learn_d):
                self._only[len(self._rows)] = PLAIN if learn_p else DAILY
            self._rows.append(r)
            self._hours.append(h)
            if len(self._rows) == self._refresh:
                self._fold()
        return max(0.0, min(sp, sd))

    def drivers(self) -> list[tuple[int, float]]:
        """The fields behind the last score (the plain model's: the difference from the
        device's usual), largest share first."""
        whiten = self._whiten[:self.dims]
        last = self._last if self._direct else self._last[PLAIN]
        return drivers_of(last - self._mean[PLAIN], whiten.T @ whiten)

    def _learn_profile(self) -> None:
        """Each hour's mean over the warm-up (the warm-up's mean for hours it did not see);
        both models then learn the warm-up's views as their own warm-up."""
        data = np.vstack([x for x, _ in self._buffer])
        hours = np.array([h for _, h in self._buffer])
        self._buffer = []
        shift = np.zeros((24, 2, self.dims))
        shift[:, DAILY] = data.mean(axis=0)
        for h in np.unique(hours):
            shift[h, DAILY] = data[hours == h].mean(axis=0)
        self._shift = shift
        views = data[:, None, :] - shift[hours]
        if self._smooth < 1.0:
            if self._stride == 1:       # smoothed as they came, as later readings will be
                for i in range(1, len(views)):
                    views[i] = views[i - 1] + self._smooth * (views[i] - views[i - 1])
            self._smoothed = views[-1].copy()
        for k in VIEWS:
            self._fit(k, views[:, k])
        self._direct = self._smoothed is None

    def _fit(self, k: int, data: np.ndarray) -> None:
        """Model ``k``'s mean, covariance and tail from a warm-up of its view."""
        mean = data.mean(axis=0)
        cov = np.cov(data, rowvar=False).reshape(self.dims, self.dims)
        inv = inverse(cov)
        centred = data - mean
        self._tails[k].fit(np.einsum("ij,jk,ik->i", centred, inv, centred))
        self._mean[k], self._cov[k] = mean, cov
        if self._smooth < 1.0:
            if self._recent is None:
                self._recent = self._cov.copy()
            self._recent[k] = cov
        self._started[k] = self._n - len(data) * self._stride     # the readings it spans
        self._prepare()

    def _prepare(self) -> None:
        """The whitening maps and per-hour centres from the means, covariances and profile
        (after a fold or a warm-up)."""
        assert self._shift is not None
        d = self.dims
        cov = self._cov if self._recent is None else blended(self._cov, self._recent)
        try:
            # cov = C C' (Cholesky), so W = C⁻¹ whitens: W'W = cov⁻¹.
            whiten = np.linalg.inv(np.linalg.cholesky(ridged(cov)))
        except np.linalg.LinAlgError:   # not numerically positive definite: its roots
            values, vectors = np.linalg.eigh(inverse(cov))
            whiten = np.sqrt(np.maximum(values, 0.0))[..., :, None] * vectors.transpose(0, 2, 1)
        self._whiten = whiten.reshape(2 * d, d)
        # Each hour's centre, both models at once: (shift + mean) by the block-diagonal W'.
        self._blocks = np.zeros((2 * d, 2 * d))
        self._blocks.flat[_diagonal_blocks(d)] = whiten.transpose(0, 2, 1)
        self._centre = (self._shift + self._mean).reshape(24, 2 * d).dot(self._blocks)

    def _new_regime(self, *which: bool) -> None:
        """The models whose alarm lasted ``relearn`` readings: not a fault any more but a new
        regime (another duty, a season), learnt afresh over a new warm-up, muted meanwhile;
        what they had still to learn is dropped."""
        for k, new in enumerate(which):
            if new:
                self._warm[k] = []
        self._relearning = True
        for i in range(len(self._rows)):
            learnt = [m for m in VIEWS if self._only.get(i, m) == m and not which[m]]
            self._only[i] = learnt[0] if len(learnt) == 1 else None

    def _judge_relearning(self, r: np.ndarray, h: int, t2p: float,
                          t2d: float) -> tuple[float, float]:
        """The scores while a model learns afresh: it gathers its view of the reading and
        scores NEW_REGIME (muted, learning nothing into the block) until it has a warm-up."""
        assert self._shift is not None
        scores = []
        for k, t2 in ((PLAIN, t2p), (DAILY, t2d)):
            warm = self._warm[k]
            if warm is None:
                score = self._tails[k].judge(t2)
                if score == NEW_REGIME:
                    self._new_regime(k == PLAIN, k == DAILY)
            else:
                if self._n % self._stride == 0:
                    warm.append(r - self._shift[h, k] if self._direct else r[k])
                if len(warm) == self._warmup // self._stride:
                    self._warm[k] = None
                    self._fit(k, np.array(warm))
                score = NEW_REGIME
            scores.append(score)
        self._relearning = any(w is not None for w in self._warm)
        return scores[PLAIN], scores[DAILY]

    def _fold(self) -> None:
        """The block into each model's mean and covariance (deviations from the mean they
        were scored against) and into the profile; then the inverses afresh."""
        assert self._shift is not None
        a, hours = self._forget, self._hours
        # Each row's deviations, as it was scored (nothing moved since): a reading less its
        # hour's offsets (most blocks lie within one hour: one row of offsets for all), or
        # a fast device's smoothed views less the means.
        one_hour = hours.count(hours[0]) == len(hours)
        if self._direct:
            offsets = self._shift + self._mean
            block = np.array(self._rows)[:, None, :] - (
                offsets[hours[0]] if one_hour else offsets[hours])
        else:
            block = np.array(self._rows) - self._mean
        for m in VIEWS:
            part, part_hours = block[:, m], hours
            if self._only:     # rows one model learnt alone (or neither, since dropped)
                rows = [i for i in range(len(block)) if self._only.get(i, m) == m]
                part, part_hours = block[rows, m], [hours[i] for i in rows]
            if not part_hours:
                continue
            if m == DAILY:
                self._add_to_profile(part, part_hours, one_hour)
            self._mean[m] += fold_weights(a, len(part)) @ part
            self._cov[m] = folded(self._cov[m], part, a)
            if self._recent is not None:
                self._recent[m] = folded(self._recent[m], part, self._spread)
        self._rows, self._hours, self._only = [], [], {}
        self._prepare()

    def _add_to_profile(self, deviations: np.ndarray, hours: list[int], one_hour: bool) -> None:
        """Each hour's usual moves toward the readings learnt at that hour, by the rate of
        their difference from it (the daily deviation plus the mean it was taken from)."""
        assert self._shift is not None
        apart = deviations + self._mean[DAILY]
        if one_hour:
            self._shift[hours[0], DAILY] += self.rate * np.add.reduce(apart)
        else:
            np.add.at(self._shift[:, DAILY], hours, self.rate * apart)

    def state(self) -> dict[str, Any] | None:
        """Plain data another collector resumes from (:class:`DailyState`), or None while
        either model is still in its warm-up."""
        if self._shift is None or self._relearning:
            return None
        if self._rows:
            self._fold()
        models = [T2State(
            dims=self.dims, p=self._tails[k].p, warmup=self._warmup, forget=self._forget,
            refresh=self._refresh, relearn=self._tails[k].relearn,
            smooth=round(1 / self._smooth), n=self._n - self._started[k],
            smoothed=None if self._smoothed is None else self._smoothed[k].tolist(),
            mean=self._mean[k].tolist(), cov=self._cov[k].tolist(),
            recent=None if self._recent is None else self._recent[k].tolist(),
            **self._tails[k].state())
            for k in VIEWS]
        return DailyState(plain=models[PLAIN], daily=models[DAILY],
                          profile=self._shift[:, DAILY].tolist(), rate=self.rate).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> Daily:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote.
        """
        s = DailyState.model_validate(saved)
        models = [checked_state(s.plain.model_dump()), checked_state(s.daily.model_dump())]
        shared = [m.model_dump(include={"dims", "p", "warmup", "forget", "refresh", "relearn",
                                        "smooth"}) for m in models]
        if shared[0] != shared[1] or any(len(row) != shared[0]["dims"] for row in s.profile):
            raise ValueError("a state whose parts have other settings or fields of another "
                             "number")
        if (models[0].smoothed is None) != (shared[0]["smooth"] == 1):
            raise ValueError("a state smoothed when its setting is not, or the other way")
        det = cls(**shared[0])
        det.rate = s.rate
        det._shift = np.zeros((24, 2, det.dims))
        det._shift[:, DAILY] = s.profile
        if models[PLAIN].smoothed is not None:
            det._smoothed = np.array([m.smoothed for m in models])
        det._direct = det._smoothed is None
        det._mean = np.array([m.mean for m in models])
        det._cov = np.array([m.cov for m in models])
        if det._smooth < 1.0:
            # A fast device's recent spread; a state from before it starts it as the cov.
            det._recent = np.array([m.cov if m.recent is None else m.recent for m in models])
        det._n = max(m.n for m in models)
        for k, m in enumerate(models):
            det._started[k] = det._n - m.n
            det._tails[k].resume(m)
        det._prepare()
        return det

    def _resume_two(self, old: dict[str, Any]) -> None:
        """This detector from a snapshot of the pair as two T2 objects (before it was scored
        in one pass): from their states when past the warm-up, else afresh with their
        settings and the warm-up's readings so far."""
        plain, daily = old["_plain"], old["_daily"]
        if not isinstance(plain, T2) or not isinstance(daily, T2):
            raise ValueError("not a pair of T² models")
        states = (plain.state(), daily.state())
        profile = old.get("_profile")
        if states[0] is not None and states[1] is not None and profile is not None:
            det = Daily.from_state({"plain": states[0], "daily": states[1],
                                    "profile": np.asarray(profile).tolist(),
                                    "rate": old["_rate"]})
        else:
            det = Daily(**plain.settings())
            det.rate = old["_rate"]
            for x, h in old.get("_buffer") or []:
                det.update(x, h)
        for name in Daily.__slots__:
            setattr(self, name, getattr(det, name))


@functools.cache
def _diagonal_blocks(d: int) -> np.ndarray:
    """The flat indices of a 2d×2d matrix's two diagonal d×d blocks, row by row."""
    block = (np.arange(d)[:, None] * 2 * d + np.arange(d)).ravel()
    return np.concatenate([block, block + d * 2 * d + d])


def for_device(dims: int, readings_per_day: float, alerts_per_day: float,
               warmup: int | None = None) -> Daily:
    """The detector for one device, as the collector runs it live and ``sct detect replay``
    offline: two T² models with the live warm-up, smoothing, memory and budget
    (:func:`~collector.detect.multivariate.settings_for_device`)."""
    return Daily(dims, **settings_for_device(readings_per_day, alerts_per_day, warmup),
                 readings_per_hour=readings_per_day / 24)
