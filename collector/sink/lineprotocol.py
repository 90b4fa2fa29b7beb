"""InfluxDB line protocol: points -> bytes, with every escape the protocol needs.

    measurement,tag=value,tag=value field=1.5,flag=true,count=3i,text="a \\"q\\"" 1700000000000

Readings are floats and always written with a decimal point or exponent, so a field's
type never flips between float and integer. Line protocol has no escape for a newline
in names or tag values, so newlines there are written as the two characters ``\\n``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from devices.schema import FieldValue, Point

# InfluxDB 1.x keeps a backslash in a name or tag literally (it does not unescape "\\\\"),
# so backslashes are left alone there; only a trailing one cannot be written at all.
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    return name.translate(_MEASUREMENT)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_KEY)


def format_value(value: FieldValue) -> str:
    """Format one field value with its line-protocol type marker."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.translate(_STRING) + '"'


def encode(point: Point) -> bytes:
    """One point as one line (without the trailing newline), UTF-8."""
    head = _series(point.measurement, point.tags)
    # The hot path of the collector (every reading): field keys escaped once (a handful of
    # names), floats (nearly every reading field) formatted inline, the rest by format_value.
    fields = ",".join([f"{_field_key(k)}={v!r}" if type(v) is float else
                       f"{_field_key(k)}={format_value(v)}" for k, v in point.fields])
    return f"{head} {fields} {point.ts_ms}".encode()


@lru_cache(maxsize=4096)
def _field_key(name: str) -> str:
    return escape_key(name)


@lru_cache(maxsize=1 << 16)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    # A device's measurement and tags repeat on every reading: escape them once.
    tagset = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in tags if v != "")
    return escape_measurement(measurement) + tagset


def encode_many(points: Iterable[Point]) -> bytes:
    """Several points, one per line, ready to POST."""
    return b"\n".join(encode(p) for p in points)
