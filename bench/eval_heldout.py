"""What the benchmarks' held-back files might score, estimated from the files that are here.

Issue 14's SKAB and GECCO targets are for files that are not in ``../shared/datasets``
(other SKAB runs, another period of the GECCO works), so they cannot be measured here. Two
estimates of how far the live detector's figures carry over, with its live setting:

- SKAB valve1's F1 and false-alarm rate bootstrapped over its sixteen files (sixteen drawn
  with replacement, 10,000 times), and over sets of four distinct files (a held-back set
  of a few runs): percentiles 5, 50 and 95;
- GECCO train cut into four consecutive quarters (about 24 days each), each scored by a
  detector of its own from its own warm-up, as a held-back period would be.

    python -m bench.eval_heldout        (part of ``make eval``)
"""

from __future__ import annotations

import sys

import numpy as np

from bench.eval_detectors import DATASETS, gecco, skab_files
from bench.scoring import Confusion
from collector.settings import DetectSettings

DRAWS = 10_000
QUARTERS = 4


def _percentiles(values: list[float], spec: str = ".3f") -> str:
    return " / ".join(format(v, spec) for v in np.percentile(values, [5, 50, 95]))


def main() -> int:
    if not DATASETS.is_dir():
        print(f"no datasets at {DATASETS}", file=sys.stderr)
        return 1
    live = DetectSettings().statistical_model
    files = skab_files(DATASETS / "skab", "valve1", live)
    rng = np.random.default_rng(1)
    every = sum(files, Confusion())
    print(f"SKAB valve1, {len(files)} files: F1 {every.f1:.3f}, false-alarm rate "
          f"{every.false_alarm_rate:.1%}")
    for label, size, replace in (("16 files drawn with replacement", len(files), True),
                                 ("4 distinct files", 4, False)):
        f1s, fars = [], []
        for _ in range(DRAWS):
            drawn = sum((files[i] for i in rng.choice(len(files), size, replace=replace)),
                        Confusion())
            f1s.append(drawn.f1)
            fars.append(drawn.false_alarm_rate)
        print(f"  {label}: F1 at percentiles 5 / 50 / 95 {_percentiles(f1s)}; false-alarm "
              f"rate {_percentiles(fars, '.1%')}")
    for k in range(QUARTERS):
        c = gecco(DATASETS / "gecco2018", live, (k, QUARTERS))
        print(f"GECCO train, quarter {k + 1} of {QUARTERS} (its own warm-up): F1 {c.f1:.3f}, "
              f"false-alarm rate {c.false_alarm_rate:.2%}, event rows {c.tp + c.fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
