"""The live statistical detector of a device with one watched field (a rain tank's level; any
one-column series in ``sct detect replay``): a jump between levels the device has never made.

T² of one field is a z-score against a slowly forgotten mean: a trending series crosses it
and a short spike inside the usual spread never does (NAB 38 with the pair of
``collector/detect/daily.py`` on NAB's one-field files; README, How good). A series of one
field is better judged by what it does from one reading to the next, a small sequence
model (the idea of NAB's contextual detectors, e.g. CAD OSE, kept to its first order):

- the warm-up's readings (``warmup``, a day of them as for the pair) set a grid of ``LEVELS``
  levels over their range widened by ``MARGIN`` ranges on each side (a level is 3/16 of
  the warm-up's range);
- the detector remembers every pair (level before, level now) it has seen, from the
  warm-up on: at most ``LEVELS``² pairs, a few dozen in practice;
- a reading alarms when its pair is new **and** it jumps at least ``JUMP`` levels: a slow
  drift (a tank filling with rain) moves a level at a time and is learnt as it goes, a
  jump never seen before (a burst, a stuck probe's drop, a spike) is not. Each new pair
  alarms once, then it is known; after an alarm the detector is quiet for ``REST``
  readings (one incident, one alert);
- a reading off the grid is judged as one more level past its end (a new pair, its jump
  counted on), then the grid widens on that side to take it in, at least doubling, and the
  pairs it knows are carried over (each level by its middle): a series whose swings
  outgrow its warm-up (heavy tails, a new regime) is soon judged on a grid of its own
  scale, where its usual swings are small jumps and only one beyond what it has done
  alarms. The grid never narrows.

There is no tail to place here, so the false-alarm budget does not set this detector's
threshold: its false alarms are bounded by its pairs (each new pair alarms once) and
by ``REST``. On the simulated normal fleet (rain tanks included) it raised none; README.

The score returned is the jump in levels over ``JUMP`` for a new pair (0 for a known one):
1.0 or more alarms, below 1.0 while quiet after an alarm.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: The grid's levels over the warm-up's range and its margins.
LEVELS = 16
#: The grid reaches this many of the warm-up's ranges beyond it on each side.
MARGIN = 1.0
#: A new pair alarms when it jumps at least this many levels.
JUMP = 2
#: Readings without an alarm after one.
REST = 100
#: Readings are taken as at most this large either way.
BOUND = 1e300


class LevelsState(BaseModel):
    """A device's levels detector as a collector taking the device over receives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    warmup: int = Field(ge=2)
    # Readings are within ±BOUND, so a grid of its own stays within a hundred times it.
    low: float = Field(ge=-100 * BOUND, le=100 * BOUND)
    width: float = Field(gt=0, le=100 * BOUND)
    pairs: list[tuple[int, int]] = Field(max_length=LEVELS ** 2)
    last: int = Field(ge=0, lt=LEVELS)
    quiet: int = Field(ge=0, le=REST)


class Levels:
    """One field's detector: new jumps between the levels of a grid its warm-up set."""

    __slots__ = ("_buffer", "_last", "_low", "_pairs", "_quiet", "_width", "warmup")
    dims = 1

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self._buffer: list[float] | None = []     # the warm-up's readings, None after it
        self._low = 0.0
        self._width = 1.0
        self._pairs: set[tuple[int, int]] = set()
        self._last = 0
        self._quiet = 0

    def update(self, x: np.ndarray | float, hour: int = 0) -> float:
        """Score one reading (``x``: its one field, or an array of it; ``hour`` unused,
        accepted as every device detector's)."""
        value = float(x[0]) if isinstance(x, np.ndarray) else float(x)
        if value != value:                       # NaN: not a reading (the callers drop them)
            return 0.0
        # Within ±BOUND every grid's arithmetic stays finite (a doubling past 1e308 would
        # not): a reading beyond is as far off the grid as one at it.
        value = min(max(value, -BOUND), BOUND)
        if self._buffer is not None:
            self._buffer.append(value)
            if len(self._buffer) >= self.warmup:
                self._learn_grid(self._buffer)
            return 0.0
        level = math.floor((value - self._low) / self._width)
        jump = abs(level - self._last)
        if 0 <= level < LEVELS:
            pair = (self._last, level)
            new = pair not in self._pairs
            if new:
                self._pairs.add(pair)
        else:                                    # off the grid: a pair it cannot know
            new = True
            self._widen(value)                   # (which moves _last to the new grid)
            level = self._level(value)
            self._pairs.add((self._last, level))
        self._last = level
        score = jump / JUMP if new else 0.0
        if self._quiet > 0:
            self._quiet -= 1
            return min(score, 0.999)             # seen, but the incident is already raised
        if score >= 1.0:
            self._quiet = REST
        return score

    def _level(self, value: float) -> int:
        """The level of a value on the grid, the end levels taking what lies past them."""
        return min(max(math.floor((value - self._low) / self._width), 0), LEVELS - 1)

    def _learn_grid(self, readings: list[float]) -> None:
        low, high = min(readings), max(readings)
        spread = (high - low) or abs(high) or 1.0     # a flat warm-up: a grid of its size
        self._low = low - MARGIN * spread
        self._width = spread * (1 + 2 * MARGIN) / LEVELS
        levels = [self._level(v) for v in readings]
        self._pairs = set(itertools.pairwise(levels))
        self._last = levels[-1]
        self._buffer = None

    def _widen(self, value: float) -> None:
        """Widen the grid to take ``value`` in, at least doubling it on that side; the pairs
        and the last level move to the new grid by their levels' middles."""
        low, width = self._low, self._width
        extent = width * LEVELS
        top = low + extent
        inside = LEVELS / (LEVELS - 1)          # the value in the new end level, not at its edge
        if value >= top:
            self._width = max((value - low) * inside, 2 * extent) / LEVELS
        else:
            self._low = top - max((top - value) * inside, 2 * extent)
            self._width = (top - self._low) / LEVELS
        moved = {k: self._level(low + (k + 0.5) * width) for k in range(LEVELS)}
        self._pairs = {(moved[a], moved[b]) for a, b in self._pairs}
        self._last = moved[self._last]

    def state(self) -> dict[str, Any] | None:
        """Plain data another collector resumes from (:class:`LevelsState`), or None while
        in the warm-up."""
        if self._buffer is not None:
            return None
        return LevelsState(warmup=self.warmup, low=self._low, width=self._width,
                           pairs=sorted(self._pairs), last=self._last,
                           quiet=self._quiet).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> Levels:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote.
        """
        s = LevelsState.model_validate(saved)   # a pydantic ValidationError is a ValueError
        if any(not 0 <= v < LEVELS for pair in s.pairs for v in pair):
            raise ValueError("a pair of levels off the grid")
        det = cls(s.warmup)
        det._buffer = None
        det._low, det._width, det._last, det._quiet = s.low, s.width, s.last, s.quiet
        det._pairs = set(s.pairs)
        return det
