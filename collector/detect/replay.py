"""``sct detect replay``: the same detector code, offline, over a CSV file.

One output row per input row, in order: the time, a ``score`` and a ``flag`` (1 when the
score reaches 1.0). With several value columns each column has its own detector and a row
is flagged when any column is. A missing or unparsable cell is skipped for its column.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import TextIO

from collector.detect.catalog import DETECTORS


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


def run(rows: Iterator[dict[str, str]], time_column: str, value_columns: list[str],
        detector: str) -> Iterator[tuple[str, float, int]]:
    """(time, score, flag) for each row."""
    make = DETECTORS[detector]
    detectors = {column: make() for column in value_columns}
    for row in rows:
        stamp = row[time_column]
        hour = hour_of(stamp)
        score = 0.0
        for column, det in detectors.items():
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                continue
            if value != value:  # NaN
                continue
            score = max(score, det.update(value, hour))
        yield stamp, score, int(score >= 1.0)


def replay_csv(source: TextIO, out: TextIO, time_column: str, value_columns: list[str],
               detector: str, delimiter: str | None = None) -> int:
    """Read ``source``, write time,score,flag to ``out``; the number of rows."""
    head = source.readline()
    if delimiter is None:
        delimiter = ";" if head.count(";") > head.count(",") else ","
    columns = next(csv.reader([head], delimiter=delimiter))
    missing = [c for c in [time_column, *value_columns] if c not in columns]
    if missing:
        raise ValueError(f"no column {', '.join(missing)} in {', '.join(columns)}")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([time_column, "score", "flag"])
    rows = csv.DictReader(source, fieldnames=columns, delimiter=delimiter)
    count = 0
    for stamp, score, flag in run(rows, time_column, value_columns, detector):
        writer.writerow([stamp, f"{score:.6g}", flag])
        count += 1
    return count


def main(path: str, time_column: str, value_columns: list[str], detector: str) -> int:
    with open(path, newline="", encoding="utf-8") as source:
        replay_csv(source, sys.stdout, time_column, value_columns, detector)
    return 0
