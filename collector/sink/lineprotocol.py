"""InfluxDB line protocol: points -> bytes, with every escape the protocol needs.

    measurement,tag=value,tag=value field=1.5,flag=true,count=3i,text="a \\"q\\"" 1700000000000

Readings are floats and always written with a decimal point or exponent, so a field's
type never flips between float and integer. A finite float is written as orjson writes it
in JSON: the shortest text that reads back as the same float, as ``repr`` writes it except
that a negative exponent has no leading zero and decimals go down to 1e-5 (``1e+16`` as
``repr``, ``0.00001`` for its ``1e-05``, ``1e-7`` for ``1e-07``); InfluxDB reads it as the
same float (a test writes such floats to the real InfluxDB). orjson writes a reading's
floats several times faster than ``repr`` does, one call for all of them. Line protocol has
no escape for a newline in names or tag values, so newlines there are written as the two
characters ``\\n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

import orjson

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
        # orjson's text, as the reading writers write it (the module's docstring); a value
        # that is not finite cannot be stored and has no JSON text: repr says what it was.
        return orjson.dumps(value).decode() if math.isfinite(value) else repr(value)
    return '"' + value.translate(_STRING) + '"'


def encode(point: Point) -> bytes:
    """One point as one line (without the trailing newline), UTF-8."""
    head = _series(point.measurement, point.tags)
    # Events, status changes, alerts and the collector's own points; readings take
    # reading_writer's, which write the same bytes.
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


#: A kind's line writer: (the device's escaped series as bytes, the reading's values by
#: name, its stamp) -> the reading's line.
ReadingWriter = Callable[[bytes, Mapping[str, FieldValue | None], int], bytes]


def reading_writer(fields: tuple[tuple[str, type], ...]) -> ReadingWriter:
    """A kind's reading line writer, written once per kind from its fields and their types.

    The hot path of the collector, one call per reading: the series is the device's
    (escaped once, by the caller), so no :class:`Point` is built only to be taken apart
    again. The code is generated (as :func:`collections.namedtuple` generates its class) so a
    reading costs one look-up per field and no loop, type test or call per field. A reading
    that carries every field (what devices send) is written by one ``orjson.dumps`` of all
    its values (a float's text and a bool's ``true`` / ``false`` are JSON's, see the module's
    docstring) split at the commas and put into the line by one ``bytes %``: for a lit
    streetlight's eight fields 0.86 µs against 1.25 for an f-string of ``repr`` s, timed
    alone (README "Performance", part 8). A reading that leaves fields out is written field
    by field. Types other than bool and float (a validated reading holds only those, its
    floats finite: ``devices.payloads.reading_types``) go through :func:`format_value`.
    The bytes are those :func:`encode` writes for the same point (a property test for every
    kind). The source is kept on the function (``__source__``).
    """
    body = ["def write(series, values, ts_ms):"]
    for i, (name, _) in enumerate(fields):
        body.append(f"    v{i} = values[{name!r}]")
    keys = [escape_key(name).encode() + b"=" for name, _ in fields]
    namespace: dict[str, object] = {"format_value": format_value, "dumps": orjson.dumps}
    if fields and all(kind in (bool, float) for _, kind in fields):
        # Every field sent: the values' JSON array, split at its commas (no value's text
        # has one), fills the line's template. '%' in a name is doubled for the template.
        namespace["LINE"] = b"%s " + b",".join(key.replace(b"%", b"%%") + b"%s"
                                                for key in keys) + b" %d"
        present = " and ".join(f"v{i} is not None" for i in range(len(fields)))
        values = ", ".join(f"v{i}" for i in range(len(fields)))
        body.append(f"    if {present}:")
        body.append(f"        return LINE % (series, *dumps(({values},))[1:-1].split(b','), "
                     "ts_ms)")
    body += ["    parts = []", "    add = parts.append"]
    for i, (key, (_, kind)) in enumerate(zip(keys, fields, strict=True)):
        namespace[f"K{i}"] = key
        if kind is bool:
            body.append(f"    if v{i} is not None: add(K{i} + (b'true' if v{i} else b'false'))")
        elif kind is float:
            body.append(f"    if v{i} is not None: add(K{i} + dumps(v{i}))")
        else:
            body.append(f"    if v{i} is not None: add(K{i} + format_value(v{i}).encode())")
    body.append("    return b'%s %s %d' % (series, b','.join(parts), ts_ms)")
    source = "\n".join(body)
    # Safe to exec: the names are our own schema's, and each one reaches the code only as
    # bytes in the namespace (K0, K1, ..., LINE), never as source.
    exec(source, namespace)
    write: ReadingWriter = namespace["write"]  # type: ignore[assignment]
    write.__source__ = source  # type: ignore[attr-defined]
    return write


def encode_many(points: Iterable[Point]) -> bytes:
    """Several points, one per line, ready to POST."""
    return b"\n".join(encode(p) for p in points)
