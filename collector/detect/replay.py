"""``sct detect replay``: the same detector code, offline, over a CSV file.

One output row per input row, in order: the time, a ``score`` and a ``flag`` (1 when the
score reaches 1.0). With several value columns each column has its own detector and a row
is flagged when any column is. A missing, unparsable, NaN or infinite cell is skipped for its
column.

A multivariate detector (``VECTOR_DETECTORS``, e.g. ``t2``) takes all the value columns as
the fields of one device: a missing cell keeps that field's last value, and the device's
readings per day (for its false-alarm budget) come from the median interval of the first
rows' timestamps. Its budget (alerts per day) and warm-up are the live ones unless given.

``sct detect replay`` runs, by default, the detector the collector runs live
(``detect.statistical_model``) with the live budget (``detect.statistical_alerts_per_100_days``).
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TextIO

import numpy as np

from collector.detect.catalog import (
    ALERTS_PER_DAY,
    DETECTORS,
    RATE_READINGS,
    VECTOR_DETECTORS,
)
from collector.detect.catalog import readings_per_day as per_day


def hour_of(text: str) -> int:
    """Hour of the day of a timestamp cell (ISO text, or epoch seconds / milliseconds)."""
    try:
        return datetime.fromisoformat(text.strip()).hour
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return 0
    seconds = number / 1000 if number > 1e11 else number
    return int(seconds // 3600) % 24


def epoch_s(text: str) -> float | None:
    """Seconds since the epoch of a timestamp cell (ISO text, or epoch s / ms), or None."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number / 1000 if number > 1e11 else number


def readings_per_day(stamps: list[str]) -> float:
    """From the median interval between consecutive timestamps (1,440 when unknown)."""
    return per_day([t for t in (epoch_s(s) for s in stamps) if t is not None])


def cell(row: dict[str, str], column: str) -> float | None:
    """A row's cell as a number, or None when it is missing, unparsable, NaN or infinite
    (not a measurement)."""
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run(rows: Iterator[dict[str, str]], time_column: str, value_columns: list[str],
        detector: str, alerts_per_day: float = ALERTS_PER_DAY, warmup: int | None = None
        ) -> Iterator[tuple[str, float, int]]:
    """(time, score, flag) for each row. ``alerts_per_day`` and ``warmup`` are for the
    multivariate detectors (the univariate ones have their own fixed thresholds)."""
    if detector in VECTOR_DETECTORS:
        yield from _run_vector(rows, time_column, value_columns, detector, alerts_per_day,
                               warmup)
        return
    make = DETECTORS[detector]
    detectors = {column: make() for column in value_columns}
    for row in rows:
        stamp = row[time_column]
        hour = hour_of(stamp)
        score = 0.0
        for column, det in detectors.items():
            value = cell(row, column)
            if value is not None:
                score = max(score, det.update(value, hour))
        yield stamp, score, int(score >= 1.0)


def vectors(rows: Iterator[dict[str, str]], columns: list[str]
            ) -> Iterator[tuple[dict[str, str], np.ndarray | None]]:
    """Each row with its columns as one device's vector (a missing, unparsable or infinite
    cell keeps that field's last value), or None until every field has been seen."""
    last = np.full(len(columns), np.nan)
    for row in rows:
        for i, column in enumerate(columns):
            value = cell(row, column)
            if value is not None:
                last[i] = value
        yield row, None if np.isnan(last).any() else last.copy()


def _run_vector(rows: Iterator[dict[str, str]], time_column: str, value_columns: list[str],
                detector: str, alerts_per_day: float, warmup: int | None
                ) -> Iterator[tuple[str, float, int]]:
    head: list[dict[str, str]] = []
    for row in rows:                      # the first rows set the reading rate
        head.append(row)
        if len(head) == RATE_READINGS:
            break
    det = VECTOR_DETECTORS[detector](len(value_columns),
                                     readings_per_day([r[time_column] for r in head]),
                                     alerts_per_day, warmup)
    for row, vector in vectors(itertools.chain(head, rows), value_columns):
        stamp = row[time_column]
        score = det.update(vector, hour_of(stamp)) if vector is not None else 0.0
        yield stamp, score, int(score >= 1.0)


def replay_csv(source: TextIO, out: TextIO, time_column: str, value_columns: list[str],
               detector: str, delimiter: str | None = None,
               rule_fields: dict[str, str] | None = None,
               alerts_per_day: float = ALERTS_PER_DAY, warmup: int | None = None) -> int:
    """Read ``source``, write time,score,flag to ``out``; the number of rows. With
    ``rule_fields`` (column -> field), ``detector`` names a rule (:mod:`rulereplay`)."""
    head = source.readline()
    if delimiter is None:
        delimiter = ";" if head.count(";") > head.count(",") else ","
    columns = next(csv.reader([head], delimiter=delimiter))
    wanted = [time_column, *(rule_fields or value_columns)]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"no column {', '.join(missing)} in {', '.join(columns)}")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([time_column, "score", "flag"])
    rows = csv.DictReader(source, fieldnames=columns, delimiter=delimiter)
    count = 0
    if rule_fields is not None:
        from collector.detect import rulereplay
        results = rulereplay.run(rows, time_column, rule_fields, detector)
    else:
        results = run(rows, time_column, value_columns, detector, alerts_per_day, warmup)
    for stamp, score, flag in results:
        writer.writerow([stamp, f"{score:.6g}", flag])
        count += 1
    return count


def main(path: str, time_column: str, value_columns: list[str], detector: str,
         rule_fields: dict[str, str] | None = None, alerts_per_day: float = ALERTS_PER_DAY,
         warmup: int | None = None) -> int:
    with open(path, newline="", encoding="utf-8") as source:
        replay_csv(source, sys.stdout, time_column, value_columns, detector,
                   rule_fields=rule_fields, alerts_per_day=alerts_per_day, warmup=warmup)
    return 0
