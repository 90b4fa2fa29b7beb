"""The simulated devices behave like the real ones, and runs are reproducible."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from devices.registry import from_mapping
from simulators.behaviour import SimDevice, last_collection_s, water_demand
from simulators.registry_gen import generate

CST = timezone(timedelta(hours=8))
REGISTRY = from_mapping(generate(3, seed=2))


def device(kind: str, **attrs: object) -> SimDevice:
    d = next(d for d in REGISTRY.devices.values()
             if d.kind == kind and all(d.attrs.get(k) == v for k, v in attrs.items()))
    return SimDevice(d, random.Random(1), at(2026, 6, 21, 0))


def at(year: int, month: int, day: int, hour: float) -> float:
    return datetime(year, month, day, tzinfo=CST).timestamp() + hour * 3600


def test_streetlights_follow_the_sun_and_energy_only_rises() -> None:
    lamp = device("streetlight")
    seen = {}
    energy = []
    for hour in range(0, 48):
        obj, _ = lamp.step(at(2026, 6, 21, hour * 0.5))
        seen[hour * 0.5] = obj["on"]
        energy.append(obj["energy_kwh"])
        assert obj["power_w"] > 10 if obj["on"] else obj["power_w"] < 2
    assert seen[1.0] and seen[21.5], "on at night (sunset about 19:45 in June)"
    assert not seen[12.0] and not seen[6.0] and not seen[18.0], "off by day"
    assert energy == sorted(energy) and energy[-1] > energy[0]
    winter = device("streetlight")
    assert winter.step(at(2026, 12, 21, 17.5))[0]["on"], "December evenings are dark at 17:30"


def test_bins_fill_and_are_emptied_on_schedule() -> None:
    bin_ = device("waste_bin", category="kitchen")
    fills, emptied = [], 0
    for step in range(0, 24 * 4):
        obj, events = bin_.step(at(2026, 6, 21, step / 4))
        fills.append(obj["fill_pct"])
        emptied += sum(e["type"] == "emptied" for e in events)
    assert emptied == 2, "kitchen waste is collected at 07:00 and 19:00"
    assert fills[4 * 7 + 1] < 5 < fills[4 * 18]
    assert last_collection_s("hazardous", at(2026, 6, 21, 12)) <= at(2026, 6, 21, 12)


def test_water_has_a_low_night_minimum() -> None:
    assert water_demand(3.5) < 0.3 * water_demand(7.5)
    meter = device("water_meter", role="inlet")
    night = meter.step(at(2026, 6, 21, 3.5))[0]["flow_m3h"]
    morning = meter.step(at(2026, 6, 21, 7.5))[0]["flow_m3h"]
    assert 0 < night < morning / 3


def test_doors_are_busy_at_commuting_hours() -> None:
    door = device("door")

    def accesses(hour: float) -> int:
        return sum(e["type"] == "access" for _ in range(400)
                   for e in door.step(at(2026, 6, 22, hour))[1])

    assert accesses(8.0) > 4 * accesses(3.0)


def test_same_seed_same_readings() -> None:
    def run() -> list[dict]:
        sims = [SimDevice(d, random.Random(9), 0.0) for d in list(REGISTRY.devices.values())[:50]]
        return [s.step(datetime(2026, 3, 1, tzinfo=UTC).timestamp())[0] for s in sims]

    assert run() == run()
