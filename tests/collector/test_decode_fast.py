"""The decoder's fast path (readings validated from the payload's bytes) against its general
path (parsed with orjson, then validated): on generated payloads of every kind, the same
objects accepted with the same values, and the same refused with the same reasons.

The generator aims at where two JSON parsers can differ: NaN and Infinity literals, numbers
beyond a float or a 64-bit integer, lone surrogates, bytes that are not UTF-8, duplicate
keys (the first copy holding any of those), spaces around colons, colons inside texts,
white space and a byte-order mark before the payload, empty arrays and non-objects in
arrays, truncated payloads, stamps as numbers and as text, and values of the wrong type.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode import Decoded, Decoder, object_bytes
from collector.records import Inbound
from collector.settings import ValidationSettings
from devices.payloads import TELEMETRY_MODELS, reading_types

NOW = int(time.time() * 1000)
SETTINGS = ValidationSettings()

#: Numbers as JSON text, some of which only one parser takes.
ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "0",
               "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616",
               "1.0", "1E2", "01", "1.", ".5", "+1", "0x10"]


def _number(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(ODD_NUMBERS))
    if kind == 1:
        return json.dumps(draw(st.integers(-10**6, 10**6)))
    value = draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
    return repr(value) if kind == 2 else json.dumps(round(value, 3))


def _text(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return '"\\ud800"'          # a lone surrogate, escaped
    if choice == 1:
        return '"\udcff"'           # one that will not encode as UTF-8 (replaced below)
    return json.dumps(draw(st.text(max_size=8)))


@st.composite
def values(draw: st.DrawFn) -> str:
    """A JSON value as text, of any type."""
    choice = draw(st.integers(0, 6))
    if choice <= 2:
        return _number(draw)
    if choice == 3:
        return draw(st.sampled_from(["true", "false", "null"]))
    if choice == 4:
        return _text(draw)
    if choice == 5:
        return "[1]"
    return '{"a":1}'


@st.composite
def stamps(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return json.dumps(NOW - draw(st.integers(0, 10 * 86_400_000)))
    if choice == 1:
        return json.dumps(NOW + draw(st.integers(-10**9, 10**9)))
    if choice == 2:
        return json.dumps("2026-12-01T08:00:00+08:00")
    if choice == 3:
        return json.dumps("2026-12-01T08:00:00")   # no offset: refused
    return draw(values())


#: Numbers every reading field takes (all are at least 0 and at most 14), written as JSON can
#: write them.
GOOD_NUMBERS = ["0", "5", "1.5", "1E1", "0.0", "-0.0", "1e-400", "14", "3.25e0"]


@st.composite
def objects(draw: st.DrawFn, kind: str) -> str:
    """An object for ``kind`` as JSON text. Mostly a good one (a good stamp and good values,
    sometimes with a key given twice, the first copy holding anything: a value only one
    parser takes, hidden by the second); else its fields and envelope with values of any
    type, sometimes an unknown key."""
    types = dict(reading_types(TELEMETRY_MODELS[kind]))
    names = list(types)
    clean = draw(st.integers(0, 2)) > 0
    pairs: list[tuple[str, str]] = []
    if clean or draw(st.booleans()):
        pairs.append(("ts", json.dumps(NOW - draw(st.integers(0, 86_400_000))) if clean
                      else draw(stamps())))
    for name in draw(st.lists(st.sampled_from(names), min_size=int(clean),
                              max_size=len(names), unique=clean)):
        if clean or draw(st.booleans()):
            value = draw(st.sampled_from(["true", "false"])) if types[name] is bool \
                else draw(st.sampled_from(GOOD_NUMBERS))
        else:
            value = draw(values())
        if draw(st.integers(0, 4)) == 0:
            pairs.append((name, draw(values())))    # hidden by the copy that follows
        pairs.append((name, value))
    extra = draw(st.integers(0, 9))
    if extra == 0:
        pairs.append(("seq", draw(st.sampled_from(
            ["0", "7", "18446744073709551615", "18446744073709551616", "1" + "0" * 30]))
            if clean else draw(values())))
    elif extra == 1:
        pairs.append(("device", draw(st.sampled_from(['"lamp-1"', '"other"', '"a\\":b"',
                                                      "1"]))))
    elif extra == 2 and not clean:
        pairs.append(("unknown", "1"))
    colon = draw(st.sampled_from([":", ":", ":", " : "]))
    return "{" + ",".join(f"{json.dumps(k)}{colon}{v}" for k, v in pairs) + "}"


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(TELEMETRY_MODELS)))
    if draw(st.booleans()):
        text = draw(objects(kind))
    else:
        items = draw(st.lists(objects(kind), max_size=4))
        if draw(st.integers(0, 9)) == 0:
            items.append(draw(values()))          # a non-object in the array
        text = "[" + ",".join(items) + "]"
    raw = text.encode("utf-8", "replace")
    edit = draw(st.integers(0, 9))
    if edit == 0:
        raw = b" " + raw
    elif edit == 1:
        raw = b"\xef\xbb\xbf" + raw               # a byte-order mark
    elif edit == 2 and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]   # truncated
    elif edit == 3:
        raw = raw.replace(b'"', b'"\xff', 1)      # not UTF-8
    elif edit == 4:
        raw = raw + b"\n"
    return kind, raw


def _accepted(item: Decoded) -> tuple[Any, ...]:
    body = item.body.__dict__ if item.body is not None else None
    return (item.where, body, item.ts_ms, item.online, item.unstamped, item.moved,
            orjson.loads(object_bytes(item.obj)))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_the_fast_path_accepts_and_refuses_what_the_general_path_does(
        case: tuple[str, bytes]) -> None:
    kind, payload = case
    msg = Inbound(f"sc/c1/{kind}/lamp-1/telemetry", payload, NOW)
    fast_ok, fast_no = Decoder(SETTINGS, "sc").decode(msg)
    slow_ok, slow_no = Decoder(SETTINGS, "sc", fast=False).decode(msg)
    assert [_accepted(i) for i in fast_ok] == [_accepted(i) for i in slow_ok], payload
    assert [(r.reason, r.detail, r.payload) for r in fast_no] == \
        [(r.reason, r.detail, r.payload) for r in slow_no], payload


def test_the_fast_path_is_taken_and_keeps_each_object_unparsed() -> None:
    """A good reading and a good array go the fast way; each object's bytes are what a
    later refusal (an unknown device) keeps: the message itself, or that item."""
    one = orjson.dumps({"ts": NOW, "on": True, "dim_pct": 40.0})
    items = [{"ts": NOW - k, "dim_pct": float(k)} for k in range(3)]
    decoder = Decoder(SETTINGS, "sc")
    single, _ = decoder.decode(Inbound("sc/c1/streetlight/lamp-1/telemetry", one, NOW))
    assert single[0].obj is one, "the message's own bytes, not a parse of them"
    array, _ = decoder.decode(Inbound("sc/c1/streetlight/lamp-1/telemetry",
                                      orjson.dumps(items), NOW))
    assert [orjson.loads(object_bytes(i.obj)) for i in array] == items
    assert all(isinstance(i.obj, tuple) for i in array)
    # One bad item: the general path, which refuses it alone and parses the rest.
    items[1]["dim_pct"] = 140.0
    array, refused = decoder.decode(Inbound("sc/c1/streetlight/lamp-1/telemetry",
                                            orjson.dumps(items), NOW))
    assert len(array) == 2 and all(isinstance(i.obj, dict) for i in array)
    assert [r.reason for r in refused] == ["invalid"] and b"140" in refused[0].payload
