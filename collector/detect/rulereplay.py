"""``sct detect replay --rule``: a domain rule, offline, over columns mapped to its fields.

The same rule code the collector runs (``collector/detect/rules.py``), with the same
thresholds (``DetectSettings``: GB 5749-2022 limits for water quality), over a CSV whose
columns are named for what they hold: ``--field Cl=chlorine_mg_l`` feeds column ``Cl`` to
the rule as the field ``chlorine_mg_l``. One output row per input row: the time, a score
(how many limits the reading breaks) and a flag (1 while the rule's alert would be open).
A missing cell leaves the field out of that reading, as a device that did not send it.
"""

from __future__ import annotations

from collections.abc import Iterator

from collector.detect import rules
from collector.detect.replay import cell
from collector.detect.rules import Seen
from collector.settings import DetectSettings
from devices.registry import from_mapping

#: The rules replay can run, and the device kind each belongs to.
RULES = {"water_quality": (rules.water_quality, "water_quality")}


def parse_fields(pairs: list[str]) -> dict[str, str]:
    """``COLUMN=field`` pairs as column -> field.

    Raises:
        ValueError: a pair without ``=``.
    """
    out = {}
    for pair in pairs:
        column, sep, field = pair.partition("=")
        if not sep or not column or not field:
            raise ValueError(f"--field {pair!r}: say COLUMN=field, e.g. Cl=chlorine_mg_l")
        out[column] = field
    return out


def run(rows: Iterator[dict[str, str]], time_column: str, fields: dict[str, str],
        rule: str) -> Iterator[tuple[str, float, int]]:
    """(time, score, flag) for each row."""
    check, kind = RULES[rule]
    device = from_mapping({
        "communities": [{"id": "replay", "city": "baoding", "district": "replay"}],
        "devices": [{"id": "replay-1", "kind": kind, "community": "replay"}],
    }).devices["replay-1"]
    settings = DetectSettings()
    state: dict[str, object] = {}
    for row in rows:
        values = {field: value for column, field in fields.items()
                  if (value := cell(row, column)) is not None}
        seen = Seen(device, 0, 0.0, values, None, {}, state, lambda _rule: False, settings,
                    device.attrs)
        verdicts = [v for v in check(seen) if v.rule == rule]
        active = bool(verdicts and verdicts[0].active)
        yield row[time_column], float(verdicts[0].value) if verdicts else 0.0, int(active)
