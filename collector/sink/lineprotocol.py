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
    # Events, status changes, alerts and the collector's own points; readings take
    # reading_line, which writes the same bytes.
    fields = ",".join([f"{_field_key(k)}={format_value(v)}" for k, v in point.fields])
    return f"{head} {fields} {point.ts_ms}".encode()


@lru_cache(maxsize=4096)
def _field_key(name: str) -> str:
    return escape_key(name)


@lru_cache(maxsize=1 << 16)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    # Alerts and events repeat a few measurements and tag sets: escape them once.
    return series(measurement, tags)


def series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """A line's measurement and tags, escaped (tags with an empty value left out)."""
    tagset = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in tags if v != "")
    return escape_measurement(measurement) + tagset


#: A reading's field keys, each escaped with its "=", and the name to look its value up by.
FieldKeys = tuple[tuple[str, str], ...]


def field_keys(names: tuple[str, ...]) -> FieldKeys:
    """What :func:`reading_line` needs of a kind's reading fields, built once per kind."""
    return tuple((escape_key(name) + "=", name) for name in names)


def reading_line(series_text: str, keys: FieldKeys, values: dict[str, FieldValue | None],
                 ts_ms: int) -> bytes:
    """A reading's line straight from its validated values (``None``: not sent, left out).

    The hot path of the collector, one call per reading: the series is the device's
    (escaped once, by the caller), the keys the kind's, so no :class:`Point` is built only
    to be taken apart again; that halves the cost of enrich and encode (README
    "Performance"). The bytes are those :func:`encode` writes for the same point.
    """
    fields = ",".join([key + (repr(v) if type(v) is float else format_value(v))
                       for key, name in keys if (v := values[name]) is not None])
    return f"{series_text} {fields} {ts_ms}".encode()


def encode_many(points: Iterable[Point]) -> bytes:
    """Several points, one per line, ready to POST."""
    return b"\n".join(encode(p) for p in points)
