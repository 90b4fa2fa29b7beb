"""Malformed and hostile messages, each with what must happen to it.

``hostile(community, lamp, door, other_community)`` gives (label, topic, payload, expect)
where expect is a reject reason, or ``"accept"`` for input that is odd but valid (and must
then be stored exactly, not injected into).
"""

from __future__ import annotations

import time

import orjson

REASONS = {"too_large", "bad_topic", "bad_json", "invalid", "unknown_device",
           "community_mismatch", "kind_mismatch", "device_mismatch", "ts_future",
           "ts_too_old"}

#: Texts that would break a line if they reached it unescaped.
INJECTIONS = ['x" ,evil=1 0', "x\\", 'x\\" evil=1', "a b,c=d", "=,\\ ", 'end"', "中文 ,=\\"]


def hostile(community: str, lamp: str, door: str,
            other_community: str) -> list[tuple[str, str, bytes, str]]:
    now = int(time.time() * 1000)
    t_lamp = f"sc/{community}/streetlight/{lamp}/telemetry"
    t_door_event = f"sc/{community}/door/{door}/event"
    t_lamp_event = f"sc/{community}/streetlight/{lamp}/event"
    t_status = f"sc/{community}/door/{door}/status"
    d = orjson.dumps
    cases: list[tuple[str, str, bytes, str]] = [
        # truncated and broken JSON
        ("truncated object", t_lamp, b'{"dim_pct": 5', "bad_json"),
        ("truncated string", t_lamp, b'{"dim_pct": "5', "bad_json"),
        ("truncated array", t_lamp, b'[{"dim_pct": 5}', "bad_json"),
        ("trailing comma", t_lamp, b'{"dim_pct": 5,}', "bad_json"),
        ("single quotes", t_lamp, b"{'dim_pct': 5}", "bad_json"),
        ("empty payload", t_lamp, b"", "bad_json"),
        ("whitespace", t_lamp, b"   \n\t ", "bad_json"),
        ("null", t_lamp, b"null", "bad_json"),
        ("a number", t_lamp, b"42", "bad_json"),
        ("a string", t_lamp, b'"dim_pct"', "bad_json"),
        ("empty array", t_lamp, b"[]", "bad_json"),
        ("array of numbers", t_lamp, b"[1, 2]", "bad_json"),
        ("nested arrays", t_lamp, b"[[{\"dim_pct\": 1}]]", "bad_json"),
        ("deep nesting", t_lamp, b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        ("deep object", t_lamp, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "bad_json"),
        ("invalid utf-8", t_lamp, b'{"dim_pct": 5, "\xff\xfe": 1}', "bad_json"),
        ("lone surrogate", t_lamp, b'{"dim_pct": 5, "x": "\\ud800"}', "bad_json"),
        ("utf-8 bom", t_lamp, b'\xef\xbb\xbf{"dim_pct": 5}', "bad_json"),
        # numbers that are not numbers
        ("NaN", t_lamp, b'{"dim_pct": NaN}', "bad_json"),
        ("Infinity", t_lamp, b'{"dim_pct": Infinity}', "bad_json"),
        ("-Infinity", t_lamp, b'{"dim_pct": -Infinity}', "bad_json"),
        ("overflow to infinity", t_lamp, b'{"energy_kwh": 1e400}', "bad_json"),
        ("huge but finite", t_lamp, b'{"energy_kwh": 1e300}', "accept"),
        ("huge integer", t_lamp, b'{"dim_pct": 123456789012345678901234567890}', "invalid"),
        ("negative zero", t_lamp, b'{"dim_pct": -0.0}', "accept"),
        ("tiny", t_lamp, b'{"dim_pct": 1e-300}', "accept"),
        # wrong types
        ("bool as number", t_lamp, d({"dim_pct": True}), "invalid"),
        ("number as bool", t_lamp, d({"on": 1}), "invalid"),
        ("text as number", t_lamp, d({"dim_pct": "50"}), "invalid"),
        ("text as bool", t_lamp, d({"on": "true"}), "invalid"),
        ("null reading", t_lamp, d({"dim_pct": None}), "invalid"),
        ("list as number", t_lamp, d({"dim_pct": [50]}), "invalid"),
        ("object as number", t_lamp, d({"dim_pct": {"v": 50}}), "invalid"),
        ("out of range", t_lamp, d({"dim_pct": 100.0001}), "invalid"),
        ("negative counter", t_lamp, d({"energy_kwh": -1}), "invalid"),
        ("duplicate key, last bad", t_lamp, b'{"dim_pct": 1, "dim_pct": 500}', "invalid"),
        ("unknown field", t_lamp, d({"dim_pct": 1, "colour": "red"}), "invalid"),
        ("proto pollution", t_lamp, d({"dim_pct": 1, "__proto__": {"x": 1}}), "invalid"),
        ("only envelope", t_lamp, d({"ts": now, "seq": 1}), "invalid"),
        ("negative seq", t_lamp, d({"dim_pct": 1, "seq": -1}), "invalid"),
        ("float seq", t_lamp, d({"dim_pct": 1, "seq": 1.5}), "invalid"),
        ("widest seq", t_lamp, b'{"dim_pct": 1, "seq": 18446744073709551615}', "accept"),
        ("seq past 64 bits", t_lamp, b'{"dim_pct": 1, "seq": 18446744073709551616}', "invalid"),
        ("NaN hidden by a second dim_pct", t_lamp, b'{"dim_pct": NaN, "dim_pct": 1}',
         "bad_json"),
        ("overflow hidden by a second dim_pct", t_lamp,
         b'[{"ts": %d, "dim_pct": 1e400, "dim_pct": 1}]' % now, "bad_json"),
        # timestamps
        ("ts as float", t_lamp, d({"dim_pct": 1, "ts": now + 0.5}), "invalid"),
        ("ts as bool", t_lamp, d({"dim_pct": 1, "ts": True}), "invalid"),
        ("ts text without zone", t_lamp, d({"dim_pct": 1, "ts": "2026-01-01T00:00:00"}),
         "invalid"),
        ("ts text with newline", t_lamp, d({"dim_pct": 1, "ts": "2026-01-01T00:00:00Z\nx"}),
         "invalid"),
        ("ts zero", t_lamp, d({"dim_pct": 1, "ts": 0}), "ts_too_old"),
        ("ts negative", t_lamp, d({"dim_pct": 1, "ts": -5}), "ts_too_old"),
        ("ts in seconds", t_lamp, d({"dim_pct": 1, "ts": now // 1000}), "ts_too_old"),
        ("ts in microseconds", t_lamp, d({"dim_pct": 1, "ts": now * 1000}), "ts_future"),
        ("ts huge", t_lamp, d({"dim_pct": 1, "ts": 2**62}), "ts_future"),
        # size
        ("10 MB", t_lamp, b'{"dim_pct": 1, "pad": "' + b"x" * 10_000_000 + b'"}', "too_large"),
        # topics, identifiers and spoofing
        ("newline in device id", f"sc/{community}/streetlight/{lamp}\n/telemetry",
         d({"dim_pct": 1}), "bad_topic"),
        ("tab in community", f"sc/{community}\t/streetlight/{lamp}/telemetry",
         d({"dim_pct": 1}), "bad_topic"),
        ("upper-case kind", f"sc/{community}/Streetlight/{lamp}/telemetry", d({"dim_pct": 1}),
         "bad_topic"),
        ("injection in device id", f"sc/{community}/streetlight/x,city=evil/telemetry",
         d({"dim_pct": 1}), "bad_topic"),
        ("unknown device", f"sc/{community}/streetlight/ghost-lamp/telemetry",
         d({"dim_pct": 1}), "unknown_device"),
        ("other community", f"sc/{other_community}/streetlight/{lamp}/telemetry",
         d({"dim_pct": 1}), "community_mismatch"),
        ("other kind", f"sc/{community}/door/{lamp}/telemetry", d({"open": True}),
         "kind_mismatch"),
        ("device field spoof", t_lamp, d({"dim_pct": 1, "device": "someone-else"}),
         "device_mismatch"),
        ("device field injection", t_lamp, d({"dim_pct": 1, "device": f"{lamp}\nevil v=1"}),
         "device_mismatch"),
        # events and status
        ("unknown event type", t_door_event, d({"type": "explode"}), "invalid"),
        ("event type injection", t_door_event, d({"type": "forced,evil=1"}), "invalid"),
        ("access result injection", t_door_event,
         d({"type": "access", "result": 'granted" evil=1', "method": "card"}), "invalid"),
        ("fault code with newline", t_lamp_event, d({"type": "fault", "code": "E1\nevil v=1"}),
         "invalid"),
        ("fault code with control char", t_lamp_event, d({"type": "fault", "code": "E1\x00"}),
         "invalid"),
        ("fault code too long", t_lamp_event, d({"type": "fault", "code": "E" * 65}),
         "invalid"),
        ("event without type", t_door_event, d({"result": "granted"}), "invalid"),
        ("status injection", t_status, b"online\nevil v=1", "invalid"),
        ("status as json object", t_status, d({"online": True}), "invalid"),
    ]
    for i, text in enumerate(INJECTIONS):
        cases.append((f"escaped fault code {i}", t_lamp_event,
                      d({"type": "fault", "code": text, "ts": now - 10_000 + i}), "accept"))
    return cases
