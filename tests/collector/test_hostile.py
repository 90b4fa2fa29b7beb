"""Hostile input against decode and enrich: a fixed corpus and property-based fuzzing.

Nothing crashes (an ``internal_error`` reject would be a crash caught by the pipeline),
every refusal has a known reason and a detail, and what is accepted is exactly one line per
object whose series is the device's own: nothing can be injected.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from conftest import SMALL_REGISTRY
from corpus import INJECTIONS, REASONS, hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import ValidationSettings

REGISTRY = SMALL_REGISTRY
SERIES = {  # the only series prefixes a line may start with
    b"streetlight,city=baoding,community=c1,device=lamp-1,district=lianchi ",
    b"door,city=baoding,community=c1,device=door-1,district=lianchi ",
}
EVENT_PREFIX = re.compile(rb"^event,city=baoding,community=c1,device=(lamp-1|door-1),"
                          rb"kind=(streetlight|door),type=[a-z_]+ ")
STATUS_PREFIX = b"device_status,city=baoding,community=c1,device=door-1,kind=door "
# A field set: key=value pairs, strings quoted with \" and \\ escapes, then a timestamp.
FIELDS = re.compile(rb'^[a-z_]+=(?:"(?:[^"\\]|\\.)*"|[-+0-9.e]+i?|true|false)'
                    rb'(?:,[a-z_]+=(?:"(?:[^"\\]|\\.)*"|[-+0-9.e]+i?|true|false))* -?\d+$',
                    re.S)


def pipeline() -> Pipeline:
    return Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(REGISTRY), Counters())


def check_line(line: bytes) -> None:
    prefix = next((p for p in SERIES if line.startswith(p)), None)
    if prefix is None:
        match = EVENT_PREFIX.match(line)
        prefix = match.group(0) if match else \
            (STATUS_PREFIX if line.startswith(STATUS_PREFIX) else None)
    assert prefix is not None, f"a line outside the device's own series: {line[:120]!r}"
    assert FIELDS.match(line[len(prefix):]), f"a field set that is not well formed: {line!r}"


def check(msg: Inbound) -> tuple[list[bytes], list[Any]]:
    done = pipeline().process(msg)
    lines, rejects = list(done.lines), list(done.rejects)
    for reject in rejects:
        assert reject.reason in REASONS, (reject.reason, reject.detail)
        assert reject.detail
    for line in lines:
        check_line(line)
    return lines, rejects


CORPUS = hostile("c1", "lamp-1", "door-1", "c2")


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60
    assert len({label for label, *_ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("label", "topic", "payload", "expect"), CORPUS,
                         ids=[c[0] for c in CORPUS])
def test_hostile_message(label: str, topic: str, payload: bytes, expect: str) -> None:
    lines, rejects = check(Inbound(topic, payload, int(time.time() * 1000)))
    if expect == "accept":
        assert rejects == [] and len(lines) == 1
    else:
        assert lines == [] and {r.reason for r in rejects} == {expect}, \
            [(r.reason, r.detail) for r in rejects]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injected_text_stays_inside_its_string(text: str) -> None:
    payload = orjson.dumps({"type": "fault", "code": text})
    (line,), _ = check(Inbound("sc/c1/streetlight/lamp-1/event", payload, 1))
    assert line.count(b" ") - text.count(" ") == 2, "measurement, fields, time: no more"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
FIELD_NAMES = st.sampled_from(["on", "dim_pct", "power_w", "energy_kwh", "lux", "open",
                               "battery_pct", "ts", "seq", "device", "type", "code", "result",
                               "method", "value"])
OBJECTS = st.dictionaries(FIELD_NAMES | st.text(max_size=5), JSON, max_size=6)
TOPICS = st.sampled_from([
    "sc/c1/streetlight/lamp-1/telemetry", "sc/c1/streetlight/lamp-1/event",
    "sc/c1/door/door-1/telemetry", "sc/c1/door/door-1/event", "sc/c1/door/door-1/status",
    "sc/c2/door/door-1/event", "sc/c1/door/lamp-1/telemetry", "sc/c1/camera/x/telemetry",
]) | st.text(max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, payload=st.binary(max_size=300))
def test_fuzz_bytes(topic: str, payload: bytes) -> None:
    lines, rejects = check(Inbound(topic, payload, int(time.time() * 1000)))
    assert lines or rejects


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, value=OBJECTS | st.lists(OBJECTS, max_size=5) | JSON)
def test_fuzz_json(topic: str, value: Any) -> None:
    try:
        payload = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return  # not representable as JSON (e.g. an integer over 64 bits)
    lines, rejects = check(Inbound(topic, payload, int(time.time() * 1000)))
    objects = len(value) if isinstance(value, list) and value and topic.endswith(
        ("/telemetry", "/event")) else 1
    assert len(lines) + len(rejects) in (1, objects), "every object accounted for"
