"""InfluxDB line protocol: points -> bytes, with every escape the protocol needs.

    measurement,tag=value,tag=value field=1.5,flag=true,count=3i,text="a \\"q\\"" 1700000000000

Readings are floats and always written with a decimal point or exponent, so a field's
type never flips between float and integer. Line protocol has no escape for a newline
in names or tag values, so newlines there are written as the two characters ``\\n``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

from devices.schema import FieldValue, Point

# InfluxDB 1.x keeps a backslash in a name or tag literally (it does not unescape "\\\\"),
# so backslashes are left alone there; only a trailing one cannot be written at all.
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})
#: A field name written as it is, in line protocol and in a generated f-string.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


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


#: A kind's line writer: (the device's escaped series, the reading's values by name, its
#: stamp) -> the reading's line.
ReadingWriter = Callable[[str, Mapping[str, FieldValue | None], int], bytes]


def reading_writer(fields: tuple[tuple[str, type], ...]) -> ReadingWriter:
    """A kind's reading line writer, written once per kind from its fields and their types.

    The hot path of the collector, one call per reading: the series is the device's
    (escaped once, by the caller), so no :class:`Point` is built only to be taken apart
    again. The code is generated (as :func:`collections.namedtuple` generates its class) so a
    reading costs one look-up per field and no loop, type test or call per field: a bool
    field's text is a constant, a float's is ``repr`` (a validated reading holds exactly
    these types: ``devices.payloads.reading_types``); any other type goes through
    :func:`format_value`. That is 1.6 -> 1.1 µs for a lit streetlight's eight fields (README
    "Performance"). A reading that carries every field (what devices send) is written by
    one f-string, its floats by ``!r`` (the same text as ``repr``, without a call): 1.7 ->
    1.3 µs for the same reading, timed alone. The bytes are those :func:`encode` writes for
    the same point (a property test for every kind). The source is kept on the function
    (``__source__``).
    """
    body = ["def write(series_text, values, ts_ms):"]
    for i, (name, _) in enumerate(fields):
        body.append(f"    v{i} = values[{name!r}]")
    if fields and all(_PLAIN_NAME.fullmatch(name) for name, _ in fields):
        # Every field sent: one f-string. Only for plain names (letters, digits,
        # underscores: every model field's), which need no escape in line protocol nor in
        # the f-string's source.
        texts = []
        for i, (name, kind) in enumerate(fields):
            if kind is bool:
                texts.append(f"{name}={{'true' if v{i} else 'false'}}")
            elif kind is float:
                texts.append(f"{name}={{v{i}!r}}")
            else:
                texts.append(f"{name}={{format_value(v{i})}}")
        present = " and ".join(f"v{i} is not None" for i in range(len(fields)))
        body.append(f"    if {present}:")
        body.append(f"        return f\"{{series_text}} {','.join(texts)} {{ts_ms}}\".encode()")
    body += ["    parts = []", "    add = parts.append"]
    for i, (name, kind) in enumerate(fields):
        key = escape_key(name) + "="
        if kind is bool:
            body.append(f"    if v{i} is not None: add({key + 'true'!r} if v{i} else "
                        f"{key + 'false'!r})")
        elif kind is float:
            body.append(f"    if v{i} is not None: add({key!r} + repr(v{i}))")
        else:
            body.append(f"    if v{i} is not None: add({key!r} + format_value(v{i}))")
    body.append("    return f\"{series_text} {','.join(parts)} {ts_ms}\".encode()")
    source = "\n".join(body)
    namespace: dict[str, object] = {"format_value": format_value}
    # Safe to exec: the names are our own schema's; each one goes into the source through
    # repr() as a string literal, or, inside the f-string, only when it is a plain name.
    exec(source, namespace)
    write: ReadingWriter = namespace["write"]  # type: ignore[assignment]
    write.__source__ = source  # type: ignore[attr-defined]
    return write


def encode_many(points: Iterable[Point]) -> bytes:
    """Several points, one per line, ready to POST."""
    return b"\n".join(encode(p) for p in points)
