"""Scoring rules of the public benchmarks, implemented from their published descriptions.

NAB (Numenta Anomaly Benchmark), "standard" profile: each labelled window rewards only its
first detection, by a scaled sigmoid of how early it came (1.0 at the window's left edge,
0 at its right edge); a window without a detection costs ``fn_weight``; a detection outside
every window costs ``fp_weight`` times a sigmoid of its distance past the previous window
(full cost when no window precedes it, or 3 window-lengths after one). The first 15 % of a
file (at most 750 rows) is probation and not scored. Scores over a corpus are normalised so
the null detector (never flags) scores 0 and the perfect one 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

STANDARD = {"tp_weight": 1.0, "fp_weight": 0.11, "fn_weight": 1.0}


def scaled_sigmoid(position: float) -> float:
    """2*sigmoid(-5x) - 1, and -1 once 3 window-lengths past a window."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


@dataclass
class NabResult:
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int


def nab_file(flags: Sequence[int], windows: Sequence[tuple[int, int]],
             weights: dict[str, float] = STANDARD) -> NabResult:
    """Score one file. ``windows`` are inclusive (first, last) row indexes, sorted."""
    n = len(flags)
    probation = min(math.floor(0.15 * n), 0.15 * 5000)
    max_tp = scaled_sigmoid(-1.0)
    tp_w, fp_w, fn_w = weights["tp_weight"], weights["fp_weight"], weights["fn_weight"]
    window_of = [-1] * n
    for w, (first, last) in enumerate(windows):
        for i in range(first, last + 1):
            window_of[i] = w
    best: dict[int, float] = {}
    scored_windows: set[int] = set()
    fp_total, fp = 0.0, 0
    prev_right: int | None = None
    prev_width = 0.0
    for i in range(n):
        w = window_of[i]
        if i >= probation and w >= 0:
            scored_windows.add(w)
        if flags[i] and i >= probation:
            if w >= 0:
                first, last = windows[w]
                width = float(last - first + 1)
                position = -(last - i + 1) / width
                score = scaled_sigmoid(position) * tp_w / max_tp
                best[w] = max(best.get(w, -math.inf), score)
            else:
                position = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
                fp_total += scaled_sigmoid(position) * fp_w
                fp += 1
        if w >= 0 and i == windows[w][1]:
            prev_right, prev_width = i, float(windows[w][1] - windows[w][0] + 1)
    raw = fp_total
    for w in scored_windows:
        raw += max(-fn_w, best.get(w, -math.inf))
    return NabResult(raw=raw, null=-fn_w * len(scored_windows),
                     perfect=tp_w * len(scored_windows), tp=len(best),
                     fp=fp, fn=len(scored_windows) - len(best))


def nab_normalised(results: Sequence[NabResult]) -> float:
    raw = sum(r.raw for r in results)
    null = sum(r.null for r in results)
    perfect = sum(r.perfect for r in results)
    return 100.0 * (raw - null) / (perfect - null)


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, predicted: Sequence[int], actual: Sequence[int]) -> None:
        for p, a in zip(predicted, actual, strict=True):
            if p and a:
                self.tp += 1
            elif p:
                self.fp += 1
            elif a:
                self.fn += 1
            else:
                self.tn += 1

    def __add__(self, other: Confusion) -> Confusion:
        """Two confusions' counts together (several files as one benchmark)."""
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                         self.tn + other.tn)

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return self.tp / max(1, self.tp + self.fn)

    @property
    def false_alarm_rate(self) -> float:
        """Share of normal rows flagged (SKAB's FAR)."""
        return self.fp / max(1, self.fp + self.tn)

    @property
    def missed_alarm_rate(self) -> float:
        """Share of anomalous rows not flagged (SKAB's MAR)."""
        return self.fn / max(1, self.fn + self.tp)
