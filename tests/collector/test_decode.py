"""Decode and enrich without any server: every reason a message is refused."""

from __future__ import annotations

import time

import orjson
import pytest
from conftest import SMALL_REGISTRY

from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import ValidationSettings

NOW = int(time.time() * 1000)
REGISTRY = SMALL_REGISTRY


def run(topic: str, payload: bytes | object, **settings: object) -> tuple[list[bytes], list]:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    pipeline = Pipeline(Decoder(ValidationSettings(**settings), "sc"),  # type: ignore[arg-type]
                        Enricher(REGISTRY), Counters())
    done = pipeline.process(Inbound(topic, body, NOW))
    return list(done.lines), list(done.rejects)


def reasons(topic: str, payload: bytes | object, **settings: object) -> list[str]:
    return [r.reason for r in run(topic, payload, **settings)[1]]


LAMP = "sc/c1/streetlight/lamp-1/telemetry"


def test_a_good_reading_becomes_one_line_with_registry_tags() -> None:
    lines, rejects = run(LAMP, {"ts": NOW, "on": True, "dim_pct": 40})
    assert rejects == []
    assert lines == [f"streetlight,city=baoding,community=c1,device=lamp-1,district=lianchi "
                     f"on=true,dim_pct=40.0 {NOW}".encode()]


def test_kind_tags_events_and_status() -> None:
    lines, _ = run("sc/c1/waste_bin/bin-1/telemetry", {"ts": NOW, "fill_pct": 91})
    assert b",category=other," in lines[0]
    lines, _ = run("sc/c2/door/door-2/event",
                   {"ts": NOW, "type": "access", "result": "denied", "method": "card"})
    assert lines == [f'event,city=xinji,community=c2,device=door-2,kind=door,type=access '
                     f'n=1i,result="denied",method="card" {NOW}'.encode()]
    lines, _ = run("sc/c2/door/door-2/status", b"offline")
    assert lines[0].startswith(b"device_status,city=xinji,community=c2,device=door-2,kind=door "
                               b"online=false,reason=")
    assert b"lat=" not in lines[0], "door-2 has no position in the registry"
    # A device with a position carries it in its status, for the overview's map.
    lines, _ = run("sc/c1/streetlight/lamp-1/status", b"online")
    assert b'",lat=38.87,lon=115.46 ' in lines[0], lines[0]


def test_missing_ts_is_the_receive_time() -> None:
    lines, _ = run(LAMP, {"dim_pct": 10})
    assert lines[0].endswith(f" {NOW}".encode())


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (LAMP, b"{nope", "bad_json"),
    (LAMP, b"42", "bad_json"),
    (LAMP, b"[]", "bad_json"),
    (LAMP, b"\xff\xfe", "bad_json"),
    (LAMP, {"dim_pct": 101}, "invalid"),
    (LAMP, {"dim_pct": 1, "colour": "red"}, "invalid"),
    ("sc/c1/streetlight/lamp-9/telemetry", {"dim_pct": 1}, "unknown_device"),
    ("sc/c2/streetlight/lamp-1/telemetry", {"dim_pct": 1}, "community_mismatch"),
    ("sc/c1/waste_bin/lamp-1/telemetry", {"fill_pct": 1}, "kind_mismatch"),
    (LAMP, {"dim_pct": 1, "device": "lamp-2"}, "device_mismatch"),
    (LAMP, {"dim_pct": 1, "ts": NOW + 301_000}, "ts_future"),
    (LAMP, {"dim_pct": 1, "ts": NOW - 31 * 86_400_000}, "ts_too_old"),
    ("sc/c1/Streetlight/lamp-1/telemetry", {"dim_pct": 1}, "bad_topic"),
    ("sc/c2/water_meter/meter-1/event", {"type": "leak"}, "invalid"),
    ("sc/c2/door/door-2/status", b"sleeping", "invalid"),
])
def test_every_reject_reason(topic: str, payload: object, reason: str) -> None:
    assert reasons(topic, payload) == [reason]


def test_the_edges_of_the_time_window_are_accepted() -> None:
    assert reasons(LAMP, {"dim_pct": 1, "ts": NOW + 300_000}) == []
    assert reasons(LAMP, {"dim_pct": 1, "ts": NOW - 30 * 86_400_000}) == []
    assert reasons(LAMP, {"dim_pct": 1, "ts": NOW - 3 * 86_400_000}, max_age_days=2) == \
        ["ts_too_old"]


def test_size_limit() -> None:
    big = {"dim_pct": 1, "pad": "x" * 300}
    assert reasons(LAMP, big, max_payload_bytes=256) == ["too_large"]
    _, rejects = run(LAMP, big, max_payload_bytes=256)
    assert "over the 256-byte limit" in rejects[0].detail
    assert len(rejects[0].payload) == 256, "what is kept is bounded too"


def test_validation_detail_names_the_field_and_the_value() -> None:
    _, rejects = run(LAMP, {"dim_pct": 150})
    assert rejects[0].detail == "field 'dim_pct': Input should be less than or equal to 100 " \
                                "(got 150)"
    _, rejects = run("sc/c2/door/door-2/event", {"type": "access", "result": "granted"})
    assert rejects[0].detail == "field 'method': Field required"


def test_an_array_keeps_the_good_and_refuses_each_bad_object_alone() -> None:
    objects = [{"ts": NOW - 2, "dim_pct": 1}, {"ts": NOW - 1, "dim_pct": 500},
               {"ts": NOW, "dim_pct": 3}, "oops", {"ts": NOW, "device": "x", "dim_pct": 1}]
    lines, rejects = run(LAMP, objects)
    assert len(lines) == 2
    assert [r.reason for r in rejects] == ["invalid", "bad_json", "device_mismatch"]
    assert orjson.loads(rejects[0].payload) == objects[1], "each keeps its own object"


def test_counters() -> None:
    counters = Counters()
    pipeline = Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(REGISTRY), counters)
    pipeline.process(Inbound(LAMP, b'[{"dim_pct": 1, "ts": %d}, {"dim_pct": -1}]' % NOW, NOW))
    pipeline.process(Inbound(LAMP, b"x", NOW))
    assert (counters.received, counters.accepted, counters.rejected) == (2, 1, 2)
    assert counters.by_reason == {"invalid": 1, "bad_json": 1}


def test_an_array_item_without_ts_is_refused_with_the_reason() -> None:
    """An array is a flush of buffered readings: one receive time for all would be a lie."""
    lines, rejects = run(LAMP, [{"dim_pct": 1}, {"dim_pct": 2, "ts": NOW}, {"dim_pct": 3}])
    assert len(lines) == 1 and lines[0].endswith(b" %d" % NOW)
    assert [(r.reason, r.detail) for r in rejects] == [("invalid", "an array item needs ts")] * 2
    assert [orjson.loads(r.payload) for r in rejects] == [{"dim_pct": 1}, {"dim_pct": 3}]
    _, alone = run(LAMP, [{"dim_pct": 1}])
    assert [r.detail for r in alone] == ["an array item needs ts"]


def test_topics_parsed_once_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import collector.decode as decode

    monkeypatch.setattr(decode, "TOPIC_CACHE", 2)
    decoder = Decoder(ValidationSettings(), "sc")
    topics = [LAMP, "sc/c1/waste_bin/bin-1/telemetry", "sc/c1/streetlight/lamp-1/event",
              "sc/c1/streetlight/lamp-1/telemetry", "sc/c1/waste_bin/bin-1/telemetry"]
    for topic in topics:       # the bound reached twice: started afresh, same answers
        accepted, rejects = decoder.decode(Inbound(topic, orjson.dumps(
            {"ts": NOW, "type": "fault", "code": "E1"} if topic.endswith("event")
            else {"ts": NOW, "on": True} if "streetlight" in topic
            else {"ts": NOW, "fill_pct": 10}), NOW))
        assert rejects == [] and accepted[0].where.device == topic.split("/")[3]
        assert len(decoder._topics) <= 2
    assert [r.reason for r in decoder.decode(Inbound("sc/c1/toaster/t-1/telemetry",
                                                     b"{}", NOW))[1]] == ["bad_topic"]
    assert "sc/c1/toaster/t-1/telemetry" not in decoder._topics


def test_an_array_validated_as_one_list_gives_what_its_objects_give_alone() -> None:
    objects = [{"ts": NOW - 60_000 * k, "on": k % 2 == 0, "dim_pct": 10.0 * k,
                "power_w": 5 + k, "lux": float(k)} for k in range(1, 6)]
    decoder = Decoder(ValidationSettings(), "sc")
    together, none = decoder.decode(Inbound(LAMP, orjson.dumps(objects), NOW))
    alone = [decoder.decode(Inbound(LAMP, orjson.dumps(o), NOW))[0][0] for o in objects]
    assert none == [] and [d.body for d in together] == [d.body for d in alone]
    assert [d.ts_ms for d in together] == [d.ts_ms for d in alone]
    # One bad object: the array is taken object by object, the bad one refused alone.
    objects[2]["dim_pct"] = 140
    together, rejects = decoder.decode(Inbound(LAMP, orjson.dumps(objects), NOW))
    assert len(together) == 4 and [r.reason for r in rejects] == ["invalid"]
    assert "dim_pct" in rejects[0].detail and orjson.loads(rejects[0].payload) == objects[2]


@pytest.mark.parametrize(("topic", "reason"), [
    ("sc/c1/streetlight/no-such-lamp/telemetry", "unknown_device"),
    ("sc/c2/streetlight/lamp-1/telemetry", "community_mismatch"),
    ("sc/c1/waste_bin/lamp-1/telemetry", "kind_mismatch"),
])
def test_an_array_the_registry_refuses_is_refused_item_by_item(topic: str, reason: str) -> None:
    """Enrich looks a message's device up once (``Enricher.enrich_many``); each item of a
    refused array is still its own refusal, keeping that item's bytes."""
    kind = topic.split("/")[2]
    field = "dim_pct" if kind == "streetlight" else "fill_pct"
    items = [{"ts": NOW - k, field: float(k)} for k in range(3)]
    lines, rejects = run(topic, items)
    assert lines == []
    assert [r.reason for r in rejects] == [reason] * 3
    assert [orjson.loads(r.payload) for r in rejects] == items


def test_an_array_gives_the_lines_its_readings_give_one_by_one() -> None:
    items = [{"ts": NOW - k, "on": k % 2 == 0, "dim_pct": float(k), "lux": 3.5} for k in range(4)]
    lines, rejects = run(LAMP, items)
    assert rejects == []
    assert lines == [run(LAMP, item)[0][0] for item in items]
