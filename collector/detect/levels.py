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
  alarms. The grid never narrows;
- a second view judges the mean of each ``BLOCK`` readings the same way, on a grid of its
  own (learnt from the warm-up's block means): a change of pattern that no single step
  shows (a daily swing that flattens, a level that creeps by a step a reading and then
  holds, noise that shifts its centre) is a new jump between block means. Either view
  alarms, and they share the rest after an alarm. On NAB it found 12 more windows (82 →
  94, false alarms 212 → 321: 55.8 → 60.0; README, How good).

There is no tail to place here, so the false-alarm budget does not set this detector's
threshold: its false alarms are bounded by its pairs (each new pair alarms once) and
by ``REST``. On the simulated normal fleet (rain tanks included) it raised none; README.

The score returned is the jump in levels over ``JUMP`` for a new pair (0 for a known one):
1.0 or more alarms, below 1.0 while quiet after an alarm.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any

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
#: The second view's readings a block: few, so a change shows within a few readings;
#: enough that one reading's spike is a quarter of a block's mean.
BLOCK = 4


class GridState(BaseModel):
    """One view's grid: its bottom, a level's width, the pairs it knows, its last level."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # Readings are within ±BOUND, so a grid of its own stays within a hundred times it.
    low: float = Field(ge=-100 * BOUND, le=100 * BOUND)
    width: float = Field(gt=0, le=100 * BOUND)
    pairs: list[tuple[int, int]] = Field(max_length=LEVELS ** 2)
    last: int = Field(ge=0, lt=LEVELS)


class LevelsState(GridState):
    """A device's levels detector as a collector taking the device over receives it: the
    readings' grid, the block means' grid (``coarse``; absent in a state written before
    it: then it starts as a copy of the readings' grid) and the block being filled."""

    warmup: int = Field(ge=2)
    quiet: int = Field(ge=0, le=REST)
    coarse: GridState | None = None
    block: list[Annotated[float, Field(ge=-BOUND, le=BOUND)]] = Field(
        default_factory=list, max_length=BLOCK - 1)


class Grid:
    """One view: the levels of a grid and the pairs of them seen one after the other."""

    __slots__ = ("last", "low", "pairs", "width")

    def __init__(self, readings: list[float]) -> None:
        low, high = min(readings), max(readings)
        spread = (high - low) or abs(high) or 1.0     # a flat warm-up: a grid of its size
        self.low = low - MARGIN * spread
        self.width = spread * (1 + 2 * MARGIN) / LEVELS
        levels = [self._level(v) for v in readings]
        self.pairs: set[tuple[int, int]] = set(itertools.pairwise(levels))
        self.last = levels[-1]

    def judge(self, value: float) -> float:
        """The jump in levels over ``JUMP`` when the pair (last level, this one) is new,
        else 0; the value is then learnt."""
        level = math.floor((value - self.low) / self.width)
        jump = abs(level - self.last)
        if 0 <= level < LEVELS:
            pair = (self.last, level)
            new = pair not in self.pairs
            if new:
                self.pairs.add(pair)
        else:                                    # off the grid: a pair it cannot know
            new = True
            self._widen(value)                   # (which moves last to the new grid)
            level = self._level(value)
            self.pairs.add((self.last, level))
        self.last = level
        return jump / JUMP if new else 0.0

    def _level(self, value: float) -> int:
        """The level of a value on the grid, the end levels taking what lies past them."""
        return min(max(math.floor((value - self.low) / self.width), 0), LEVELS - 1)

    def _widen(self, value: float) -> None:
        """Widen the grid to take ``value`` in, at least doubling it on that side; the pairs
        and the last level move to the new grid by their levels' middles."""
        low, width = self.low, self.width
        extent = width * LEVELS
        top = low + extent
        inside = LEVELS / (LEVELS - 1)          # the value in the new end level, not at its edge
        if value >= top:
            self.width = max((value - low) * inside, 2 * extent) / LEVELS
        else:
            self.low = top - max((top - value) * inside, 2 * extent)
            self.width = (top - self.low) / LEVELS
        moved = {k: self._level(low + (k + 0.5) * width) for k in range(LEVELS)}
        self.pairs = {(moved[a], moved[b]) for a, b in self.pairs}
        self.last = moved[self.last]

    def state(self) -> GridState:
        return GridState(low=self.low, width=self.width, pairs=sorted(self.pairs),
                         last=self.last)

    @classmethod
    def from_state(cls, s: GridState) -> Grid:
        if any(not 0 <= v < LEVELS for pair in s.pairs for v in pair):
            raise ValueError("a pair of levels off the grid")
        grid = cls.__new__(cls)
        grid.low, grid.width, grid.last, grid.pairs = s.low, s.width, s.last, set(s.pairs)
        return grid


class Levels:
    """One field's detector: new jumps between the levels of a grid its warm-up set, of the
    readings and of their block means."""

    __slots__ = ("_block", "_buffer", "_coarse", "_grid", "_quiet", "said", "warmup")
    dims = 1

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self._buffer: list[float] | None = []     # the warm-up's readings, None after it
        self._grid: Grid | None = None
        self._coarse: Grid | None = None
        self._block: list[float] = []
        self._quiet = 0
        #: What the last alarm was about: None (a reading's jump), or the block means it
        #: jumped between (before, now), for the alert's message.
        self.said: tuple[float, float] | None = None

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
                self._learn(self._buffer)
            return 0.0
        assert self._grid is not None and self._coarse is not None
        score = self._grid.judge(value)
        said = None
        block = self._block
        block.append(value)
        if len(block) == BLOCK:
            grid = self._coarse
            low, width, previous = grid.low, grid.width, grid.last   # before judging moves them
            mean = sum(block) / BLOCK
            block.clear()
            coarse = grid.judge(mean)
            if coarse > score:
                score, said = coarse, (low + (previous + 0.5) * width, mean)
        if self._quiet > 0:
            self._quiet -= 1
            return min(score, 0.999)             # seen, but the incident is already raised
        if score >= 1.0:
            self._quiet = REST
            self.said = said
        return score

    def _learn(self, readings: list[float]) -> None:
        self._grid = Grid(readings)
        whole = len(readings) - len(readings) % BLOCK
        means = [sum(readings[i:i + BLOCK]) / BLOCK for i in range(0, whole, BLOCK)]
        self._coarse = Grid(means or [sum(readings) / len(readings)])
        self._block = readings[whole:]
        self._buffer = None

    def state(self) -> dict[str, Any] | None:
        """Plain data another collector resumes from (:class:`LevelsState`), or None while
        in the warm-up."""
        if self._grid is None or self._coarse is None:
            return None
        return LevelsState(warmup=self.warmup, **self._grid.state().model_dump(),
                           quiet=self._quiet, coarse=self._coarse.state(),
                           block=list(self._block)).model_dump()

    @classmethod
    def from_state(cls, saved: object) -> Levels:
        """The detector :meth:`state` described.

        Raises:
            ValueError: not a state this version wrote.
        """
        s = LevelsState.model_validate(saved)   # a pydantic ValidationError is a ValueError
        det = cls(s.warmup)
        det._buffer = None
        det._grid = Grid.from_state(s)
        det._coarse = Grid.from_state(s.coarse or s)
        det._quiet, det._block = s.quiet, list(s.block)
        return det
