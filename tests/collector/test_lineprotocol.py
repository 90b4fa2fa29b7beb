"""Line-protocol escaping: by the rules, and round-tripped through the real InfluxDB."""

from __future__ import annotations

import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.sink.lineprotocol import (
    encode,
    encode_many,
    escape_key,
    format_value,
    reading_writer,
    series,
)
from devices.payloads import TELEMETRY_MODELS, Telemetry, reading_types
from devices.schema import Point
from simulators import servers


def test_escapes() -> None:
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"
    assert escape_key("line\nbreak") == r"line\nbreak"
    assert format_value('say "hi" \\ now') == r'"say \"hi\" \\ now"'
    assert format_value("两行\n文本") == '"两行\n文本"', "newlines are fine inside strings"


def test_types_never_flip() -> None:
    assert format_value(50.0) == "50.0"
    # orjson's shortest text, as the reading writers write it (repr writes "1e-05" and "1e-07")
    assert format_value(1e-05) == "0.00001" and format_value(1e-7) == "1e-7"
    assert format_value(1e16) == "1e+16" and format_value(-0.0) == "-0.0"
    assert format_value(float("inf")) == "inf", "not storable: said as it is, not as null"
    assert format_value(3) == "3i"
    assert format_value(True) == "true" and format_value(False) == "false"


def test_a_whole_line() -> None:
    point = Point("water meter", (("city", "xinji"), ("role", "in let")),
                  (("flow_m3h", 1.5), ("n", 1), ("ok", True), ("note", 'a "b"')), 1700000000000)
    assert encode(point) == (b'water\\ meter,city=xinji,role=in\\ let '
                             b'flow_m3h=1.5,n=1i,ok=true,note="a \\"b\\"" 1700000000000')
    assert encode_many([point, point]).count(b"\n") == 1


def test_empty_tag_values_are_left_out() -> None:
    assert encode(Point("m", (("a", ""), ("b", "x")), (("v", 1.0),), 1)) == b"m,b=x v=1.0 1"


#: Floats whose shortest text has an exponent or many decimals ("1e-7", "0.00001", "5e-324").
TINY = [1e-05, 1e-7, 5e-324, 2.5e-3, 1.2345678901234567e-250, 0.1]
HUGE = [1e16, 1e22, 1.7976931348623157e308, 123456789012345678.0, 1e15, 3.0]

AWKWARD = ["plain", "a b", "a,b", "a=b", 'a"b', "a\\b", "x\\ y", "中文 社区", "tab\there",
           "lead space", "equals==end", "comma,,twice"]


@pytest.mark.integration
def test_awkward_text_round_trips_through_influxdb(influxdb: servers.Server) -> None:
    url = f"http://127.0.0.1:{influxdb.port}"
    servers.influx_create_database(url, "lp")
    points = [Point("odd measurement,name", (("tag key", text), ("t=k", text)),
                    (("field key,1", text), ("multi", text + "\nsecond line"), ("f", 0.1),
                     ("i", 7), ("b", False), ("tiny", TINY[i % len(TINY)]),
                     ("huge", -HUGE[i % len(HUGE)])), 1_700_000_000_000 + i)
              for i, text in enumerate(AWKWARD)]
    request = urllib.request.Request(f"{url}/write?db=lp&precision=ms",
                                     data=encode_many(points), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    (series,) = servers.influx_query(url, "lp", 'SELECT * FROM "odd measurement,name"')
    rows = [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]
    assert len(rows) == len(AWKWARD)
    for row, text in zip(rows, AWKWARD, strict=True):
        assert (row["tag key"], row["t=k"], row["field key,1"]) == (text, text, text)
        assert row["multi"] == text + "\nsecond line"
        assert (row["f"], row["i"], row["b"]) == (0.1, 7, False)
    # Floats in orjson's text (the reading writers'): each reads back as the same float.
    assert [row["tiny"] for row in rows] == [TINY[i % len(TINY)] for i in range(len(rows))]
    assert [row["huge"] for row in rows] == [-HUGE[i % len(HUGE)] for i in range(len(rows))]


@given(st.sampled_from(sorted(TELEMETRY_MODELS)), st.data())
def test_a_reading_line_is_the_line_of_its_point(kind: str, data: st.DataObject) -> None:
    """The reading hot path writes exactly what encoding the reading's point would, for
    values of the types a validated reading of the kind holds."""
    types = reading_types(TELEMETRY_MODELS[kind])
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    # Half the draws carry every field (the writer's f-string, what devices send), the
    # others leave any out (its field-by-field path).
    every = data.draw(st.booleans())
    values = {name: data.draw((st.nothing() if every else st.none())
                              | (st.booleans() if t is bool else floats))
              for name, t in types}
    tags = (("city", "石家庄"), ("community", "c 1"), ("device", "d,1"), ("district", "q=x"))
    ts = data.draw(st.integers(0, 2**62))
    line = reading_writer(types)(series(kind, tags).encode(), values, ts)
    fields = tuple((n, v) for n, v in values.items() if v is not None)
    assert line == encode(Point(kind, tags, fields, ts))


def test_a_reading_writer_writes_other_types_as_encode_does() -> None:
    write = reading_writer((("a b", int), ("on", bool), ("x", float), ("note", str)))
    values = {"a b": 3, "on": False, "x": None, "note": 'say "hi"'}
    assert write(b"m", values, 5) == encode(Point("m", (), (("a b", 3), ("on", False),
                                                           ("note", 'say "hi"')), 5))
    assert "def write(" in write.__source__  # type: ignore[attr-defined]
    values["x"] = 0.5     # every field sent, but an int and a str: written field by field
    assert "LINE" not in write.__source__  # type: ignore[attr-defined]
    assert write(b"m", values, 5) == encode(Point("m", (), tuple(values.items()), 5))


def test_a_reading_writer_escapes_names_in_its_template() -> None:
    # Names that need escaping, and a '%' that the line's bytes template must not read as
    # a conversion; every field sent, so the template is what writes them.
    types = (("a b", float), ("on,off", bool), ("100%", float), ("x=y", float))
    write = reading_writer(types)
    assert "LINE %" in write.__source__  # type: ignore[attr-defined]
    values = {"a b": 1e300, "on,off": True, "100%": -0.0, "x=y": 1e-7}
    assert write(b"m,t=1", values, 5) == encode(Point("m", (("t", "1"),),
                                                      tuple(values.items()), 5))
    assert write(b"m", values, 5) == b"m a\\ b=1e+300,on\\,off=true,100%=-0.0,x\\=y=1e-7 5"


def test_reading_types_are_what_the_writer_knows() -> None:
    assert {t for model in TELEMETRY_MODELS.values() for _, t in reading_types(model)} == \
        {bool, float}

    class Counted(Telemetry):
        count: int | None = None

    with pytest.raises(TypeError, match=r"Counted\.count"):
        reading_types(Counted)
