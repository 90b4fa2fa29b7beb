"""Readings as devices send them, for the benchmarks: every field of the kind, with values
that raise no alert (a benchmark of the smallest payload that parses measures another
program).

A lit streetlight at night: on, dimmed to 80 % of its rated 100 W and drawing about that,
mains voltage, its energy counter rising, a few lux, a warm driver: eight fields, and not one
of the lamp rules (dark, day-burning, power, counter) fires.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

KIND = "streetlight"


def lit_streetlight(i: int, ts_ms: int) -> dict[str, Any]:
    """The ``i``-th reading of a run (``i`` rising: each lamp's energy counter rises).

    The small variations come from a hash of ``i``, not from ``i`` itself: the benchmarks
    send reading i to lamp i mod n, so with ``i % 6`` a lamp of a fleet of 48 (the live
    bench's) got the same temperature every time, and the ``value_stuck`` rule raised an
    alert on every lamp after 30 readings (and then worded a message for each reading).
    Hashed, a lamp's consecutive readings repeat a value about one time in five or six,
    whatever the number of lamps (``tests/test_bench_readings.py``)."""
    h = (i * 0x9E3779B1) & 0xFFFFFFFF     # Knuth's multiplicative hash: i's bits spread
    return {"ts": ts_ms, "on": True, "dim_pct": 80.0,
            "power_w": round(79.0 + (h >> 8) % 7 * 0.3, 1),
            "voltage_v": round(219.0 + (h >> 12) % 5 * 0.5, 1),
            "current_a": round(0.362 + (h >> 16) % 3 * 0.002, 3),
            "energy_kwh": round(1000.0 + i * 0.001, 3), "lux": float(2 + (h >> 20) % 4),
            "temp_c": round(31.0 + (h >> 24) % 6 * 0.2, 1)}


def lamps(registry: dict[str, Any]) -> list[dict[str, Any]]:
    """The registry's streetlights (rated 100 W by the generator)."""
    return [d for d in registry["devices"] if d["kind"] == KIND]


def readings(count: int, base_ms: int) -> list[dict[str, Any]]:
    """``count`` lit-streetlight readings, each with its own ts (base_ms + i)."""
    return [lit_streetlight(i, base_ms + i) for i in range(count)]


def messages_of(readings: list[dict[str, Any]], devices: list[dict[str, Any]],
                per_message: int) -> list[tuple[str, bytes]]:
    """``readings`` as device messages (topic, payload), ``per_message`` a message, devices
    in turn: what the drains queue and InfluxDB's ceiling encodes."""
    out = []
    cycle = itertools.cycle(devices)
    for first in range(0, len(readings), per_message):
        device = next(cycle)
        chunk = readings[first:first + per_message]
        out.append((f"sc/{device['community']}/{device['kind']}/{device['id']}/telemetry",
                    orjson.dumps(chunk[0] if per_message == 1 else chunk)))
    return out
