"""``make eval``: the detectors on the labelled public data in ``../shared/datasets``.

By default the detector the collector runs live, with its live parameters, on every
benchmark and all its files (no per-file tuning; ``--detector`` scores others beside it).
The one benchmark-specific input is SKAB's own protocol: the first 400 rows of each file are
its training part, so they are the warm-up. Prints a table.
The datasets are read in place and never copied into this repository.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from bench.scoring import Confusion, NabResult, nab_file, nab_normalised
from collector.detect.replay import run
from collector.settings import DetectSettings

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def nab(root: Path, detector: str, onsets: bool = False) -> tuple[float, list[NabResult]]:
    """NAB's standard score. ``onsets``: a detection is a raised alert (the first row of a
    run of flagged rows, as an operator sees it), not every row while it stays raised."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    results = []
    for name, limits in sorted(windows.items()):
        path = root / "data" / name
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        stamps = [datetime.fromisoformat(r["timestamp"]) for r in rows]
        flags = [flag for _, _, flag in run(iter(rows), "timestamp", ["value"], detector)]
        if onsets:
            flags = [int(f and not (i and flags[i - 1])) for i, f in enumerate(flags)]
        spans = [(_index(stamps, a), _index(stamps, b)) for a, b in limits]
        results.append(nab_file(flags, spans))
    return nab_normalised(results), results


def _index(stamps: list[datetime], text: str) -> int:
    when = datetime.fromisoformat(text)
    return min(range(len(stamps)), key=lambda i: abs((stamps[i] - when).total_seconds()))


def skab(root: Path, folder: str, detector: str, skip: int = 400) -> Confusion:
    """SKAB's protocol: the first ``skip`` rows of each file are its training part (the
    multivariate detector's warm-up), the rest is scored."""
    return sum(skab_files(root, folder, detector, skip), Confusion())


def skab_files(root: Path, folder: str, detector: str, skip: int = 400) -> list[Confusion]:
    """Each file's confusion under SKAB's protocol (:func:`skab`), in the files' order."""
    out = []
    for path in sorted((root / "data" / folder).glob("*.csv"), key=lambda p: p.name):
        confusion = Confusion()
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter=";"))
        columns = [c for c in rows[0] if c not in ("datetime", "anomaly", "changepoint")]
        flags = [flag for _, _, flag in run(iter(rows), "datetime", columns, detector,
                                            warmup=skip)]
        actual = [int(float(r.get("anomaly", 0) or 0)) for r in rows]
        confusion.add(flags[skip:], actual[skip:])
        out.append(confusion)
    return out


@functools.cache
def _gecco_rows(root: Path) -> list[dict[str, str]]:
    # 139,566 rows, read once for every detector, part and rule scored on them.
    with (root / "train.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def gecco(root: Path, detector: str, part: tuple[int, int] = (0, 1)) -> Confusion:
    """GECCO train as one device; ``part``: (k, n), only the k-th of n consecutive parts of
    it, scored from a warm-up of its own."""
    rows = _gecco_rows(root)
    k, n = part
    rows = rows[k * len(rows) // n:(k + 1) * len(rows) // n]
    # The quality parameters; flow (Fm, Fm_2) and temperature say nothing of contamination.
    columns = ["Cl", "pH", "Redox", "Leit", "Trueb", "Cl_2"]
    flags = [flag for _, _, flag in run(iter(rows), "Time", columns, detector)]
    confusion = Confusion()
    confusion.add(flags, [int(r["EVENT"]) for r in rows])
    return confusion


#: GECCO's columns as the water_quality rule's fields (GB 5749-2022 limits).
GECCO_FIELDS = {"Cl": "chlorine_mg_l", "pH": "ph", "Trueb": "turbidity_ntu"}


def gecco_rule(root: Path) -> tuple[Confusion, dict[str, int]]:
    """The water_quality rule over GECCO train: its confusion, and which limit it broke how
    often (rows)."""
    from collections import Counter

    from collector.detect import rulereplay
    rows = _gecco_rows(root)
    flags = [flag for _, _, flag in rulereplay.run(iter(rows), "Time", GECCO_FIELDS,
                                                   "water_quality")]
    broken: Counter[str] = Counter()
    for row, flag in zip(rows, flags, strict=True):
        if flag:
            for column, field in GECCO_FIELDS.items():
                broken[field] += _breaks(field, row.get(column, ""))
    confusion = Confusion()
    confusion.add(flags, [int(r["EVENT"]) for r in rows])
    return confusion, dict(broken)


def _breaks(field: str, cell: str) -> int:
    try:
        value = float(cell)
    except ValueError:
        return 0
    return int({"chlorine_mg_l": value < 0.05, "ph": not 6.5 <= value <= 8.5,
                "turbidity_ntu": value > 1.0}[field])


def table(lines: Iterator[str]) -> None:
    for line in lines:
        print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--detector", action="append", default=[],
                        help="a detector to score (several: each); default: the one the "
                        "collector runs live (detect.statistical_model) with its budget")
    args = parser.parse_args()
    if not args.datasets.is_dir():
        print(f"no datasets at {args.datasets}", file=sys.stderr)
        return 1
    live = DetectSettings().statistical_model
    started = time.monotonic()
    print(f"{'benchmark':<28} {'detector':<14} result")
    for detector in args.detector or [live]:
        name = detector + (" (live)" if detector == live else "")
        for onsets in (False, True):
            score, results = nab(args.datasets / "nab", detector, onsets)
            what = "alert onsets" if onsets else "rows flagged"
            print(f"{'NAB standard, ' + what:<28} {name:<14} score {score:.1f}  (windows hit "
                  f"{sum(r.tp for r in results)}, missed {sum(r.fn for r in results)}, false "
                  f"positives {sum(r.fp for r in results)})", flush=True)
        for folder in ("valve1", "anomaly-free"):
            c = skab(args.datasets / "skab", folder, detector)
            print(f"{'SKAB ' + folder:<28} {name:<14} F1 {c.f1:.3f}  false-alarm rate "
                  f"{c.false_alarm_rate:.1%}  missed-alarm rate {c.missed_alarm_rate:.1%}",
                  flush=True)
        c = gecco(args.datasets / "gecco2018", detector)
        print(f"{'GECCO 2018 train':<28} {name:<14} F1 {c.f1:.3f}  precision "
              f"{c.precision:.3f}  recall {c.recall:.3f}  false-alarm rate "
              f"{c.false_alarm_rate:.1%}", flush=True)
    c, broken = gecco_rule(args.datasets / "gecco2018")
    print(f"{'GECCO 2018 train':<28} {'water_quality':<14} F1 {c.f1:.3f}  precision "
          f"{c.precision:.3f}  recall {c.recall:.3f}  false-alarm rate "
          f"{c.false_alarm_rate:.1%}  (rows breaking: {broken or 'none'})")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
