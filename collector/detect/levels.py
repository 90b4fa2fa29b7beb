"""The live statistical detector of a device with one watched field (a rain tank's level; any
one-column series in ``sct detect replay``): a jump between levels the device has never made.

T² of one field is a z-score against a slowly forgotten mean: a trending series crosses it
and a short spike inside the usual spread never does (NAB 38 with the pair of
``collector/detect/daily.py`` on NAB's one-field files; README, How good). A series of one
field is better judged by what it does from one reading to the next, a small sequence
model (the idea of NAB's contextual detectors, e.g. CAD OSE, kept to its first order):

- the warm-up's readings (``warmup``, a day of them as for the pair) set a grid of ``LEVELS``
  levels over their range widened by ``MARGIN`` ranges on each side (a level is 3/16 of
  the warm-up's range); levels further out are counted on, clipped at one grid's width
  beyond either end, so the memory stays bounded;
- the detector remembers every pair (level before, level now) it has seen, from the
  warm-up on: at most (3 x ``LEVELS`` + 1)² pairs, a few hundred in practice;
- a reading alarms when its pair is new **and** it jumps at least ``JUMP`` levels: a slow
  drift (a tank filling with rain) moves a level at a time and is learnt as it goes, a
  jump never seen before (a burst, a stuck probe's drop, a spike) is not. Each new pair
  alarms once, then it is known; after an alarm the detector is quiet for ``REST``
  readings (one incident, one alert);
- a device that stays off the grid for ``warmup`` readings in a row has changed regime and
  learns its grid again, over a new warm-up.

There is no tail to place here, so the false-alarm budget does not set this detector's
threshold: its false alarms are bounded by its pairs (each alarms once until a new grid) and
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
#: Levels are clipped this far beyond the grid (bounded memory: the pairs of 3 grids' levels).
CLIP = LEVELS


class LevelsState(BaseModel):
    """A device's levels detector as a collector taking the device over receives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    warmup: int = Field(ge=2)
    low: float
    width: float = Field(gt=0)
    pairs: list[tuple[int, int]] = Field(max_length=(3 * LEVELS + 1) ** 2)
    last: int = Field(ge=-CLIP, le=LEVELS + CLIP)
    quiet: int = Field(ge=0, le=REST)
    outside: int = Field(ge=0)


class Levels:
    """One field's detector: new jumps between levels of its warm-up's grid."""

    __slots__ = ("_buffer", "_last", "_low", "_outside", "_pairs", "_quiet", "_width",
                 "warmup")
    dims = 1

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self._buffer: list[float] | None = []     # the warm-up's readings, None after it
        self._low = 0.0
        self._width = 1.0
        self._pairs: set[tuple[int, int]] = set()
        self._last = 0
        self._quiet = 0
        self._outside = 0

    def update(self, x: np.ndarray | float, hour: int = 0) -> float:
        """Score one reading (``x``: its one field, or an array of it; ``hour`` unused,
        accepted as every device detector's)."""
        value = float(x[0]) if isinstance(x, np.ndarray) else float(x)
        if self._buffer is not None:
            self._buffer.append(value)
            if len(self._buffer) >= self.warmup:
                self._learn_grid(self._buffer)
            return 0.0
        level = self._level(value)
        pair = (self._last, level)
        jump = abs(level - self._last)
        self._last = level
        new = pair not in self._pairs
        if new:
            self._pairs.add(pair)
        self._outside = self._outside + 1 if not 0 <= level < LEVELS else 0
        if self._outside >= self.warmup:     # off the grid for a warm-up's length
            self._buffer = []
        score = jump / JUMP if new else 0.0
        if self._quiet > 0:
            self._quiet -= 1
            return min(score, 0.999)         # seen, but the incident is already raised
        if score >= 1.0:
            self._quiet = REST
        return score

    def drivers(self) -> list[tuple[int, float]]:
        """The one field behind every score."""
        return [(0, 1.0)]

    def _level(self, value: float) -> int:
        level = math.floor((value - self._low) / self._width)
        return -CLIP if level < -CLIP else (LEVELS + CLIP if level > LEVELS + CLIP else level)

    def _learn_grid(self, readings: list[float]) -> None:
        low, high = min(readings), max(readings)
        spread = (high - low) or abs(high) or 1.0     # a flat warm-up: a grid of its size
        self._low = low - MARGIN * spread
        self._width = spread * (1 + 2 * MARGIN) / LEVELS
        levels = [self._level(v) for v in readings]
        self._pairs = set(itertools.pairwise(levels))
        self._last = levels[-1]
        self._buffer = None
        self._outside = 0

    def state(self) -> dict[str, Any] | None:
        """Plain data another collector resumes from (:class:`LevelsState`), or None while
        in the warm-up."""
        if self._buffer is not None:
            return None
        return LevelsState(warmup=self.warmup, low=self._low, width=self._width,
                           pairs=sorted(self._pairs), last=self._last, quiet=self._quiet,
                           outside=self._outside).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> Levels:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote.
        """
        s = LevelsState.model_validate(saved)   # a pydantic ValidationError is a ValueError
        if any(not -CLIP <= v <= LEVELS + CLIP for pair in s.pairs for v in pair):
            raise ValueError("a pair of levels off this version's grid")
        det = cls(s.warmup)
        det._buffer = None
        det._low, det._width, det._last = s.low, s.width, s.last
        det._pairs = {tuple(p) for p in s.pairs}   # type: ignore[misc]
        det._quiet, det._outside = s.quiet, s.outside
        return det
