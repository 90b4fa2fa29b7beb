"""Faults to inject into simulated devices, and the ground truth of when they were.

Each fault type names the alert rule that should catch it, the kinds it applies to, how
long it lasts, and what it does to a device's readings and events while it lasts (a change
applied after the device's normal behaviour). ``plan`` picks devices and times; the truth
is written as CSV ``device,type,start,end`` (ISO 8601, UTC).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.registry import Device

Obj = dict[str, Any]
#: (telemetry object, events, the device's generator, seconds since the fault began)
Change = Callable[[Obj, list[Obj], random.Random, float], None]


@dataclass(frozen=True)
class FaultType:
    name: str
    kinds: tuple[str, ...]
    hours: float          # how long it lasts
    change: Change
    needs_days: float = 0.0  # history the detection needs before it (night-flow leaks)
    local_hours: tuple[int, int] | None = None  # starts between these hours (CST)
    attrs: tuple[tuple[str, str], ...] = ()     # only devices with these attributes
    implies: tuple[str, ...] = ()  # other alerts it rightly causes (a bin never emptied fills)


def _lamp_dark(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    if o.get("on"):
        o.update(on=False, dim_pct=0.0, power_w=1.0, current_a=0.005)


def _lamp_day(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    if not o.get("on"):
        o.update(on=True, dim_pct=100.0, power_w=100.0 * r.uniform(0.97, 1.02),
                 current_a=0.45)


def _driver(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    if o.get("on"):
        o["power_w"] = round(o["power_w"] * 0.4, 2)


def _fault_code(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    e.append({"type": "fault", "code": "E07"})


def _counter_reset(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["energy_kwh"] = round(max(0.0, o["energy_kwh"] - 40.0), 4)


def _bin_full(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["fill_pct"] = max(o["fill_pct"], 95.0)


def _bin_fire(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["temp_c"] = 85.0 + r.uniform(0, 5)


def _not_emptied(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    e[:] = [x for x in e if x.get("type") != "emptied"]
    o["fill_pct"] = 100.0


def _burst(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["pressure_kpa"] = round(o["pressure_kpa"] * 0.45, 1)


def _leak(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["flow_m3h"] = round(o["flow_m3h"] + 3.0, 3)


def _quality(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["turbidity_ntu"] = round(2.0 + r.uniform(0, 1), 3)


def _flood(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    # A rain tank filling fast: 40 % an hour over its usual level since the storm began.
    o["level_pct"] = min(100.0, o["level_pct"] + 40.0 * t / 3600)


def _forced(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    e.append({"type": "forced"})
    o["open"] = True


def _held_open(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    e.append({"type": "held_open"})
    o["open"] = True


def _denied(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    e.extend({"type": "access", "result": "denied", "method": "card"} for _ in range(3))


def _smoke(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o.update(alarm=True, smoke_db_m=8.0)


def _video_loss(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["recording"] = False


def _battery(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["battery_pct"] = 8.0


def _stuck(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o["temp_c"] = 21.3


def _silent(o: Obj, e: list[Obj], r: random.Random, t: float) -> None:
    o.clear()  # nothing is published while it lasts
    e.clear()


TYPES: dict[str, FaultType] = {f.name: f for f in (
    FaultType("lamp_dark", ("streetlight",), 3, _lamp_dark, local_hours=(20, 24)),
    FaultType("lamp_day_burning", ("streetlight",), 3, _lamp_day, local_hours=(9, 13)),
    FaultType("lamp_power", ("streetlight",), 3, _driver, local_hours=(20, 24)),
    FaultType("counter_backwards", ("streetlight",), 1, _counter_reset),
    FaultType("lamp_fault", ("streetlight",), 0.3, _fault_code),
    FaultType("bin_full", ("waste_bin",), 2, _bin_full),
    FaultType("bin_fire_risk", ("waste_bin",), 1, _bin_fire),
    FaultType("bin_not_emptied", ("waste_bin",), 40, _not_emptied,
              attrs=(("category", "kitchen"),), implies=("bin_full",)),
    FaultType("pressure_burst", ("water_meter",), 1, _burst),
    FaultType("leak_night_flow", ("water_meter",), 96, _leak, needs_days=7),
    FaultType("water_quality", ("water_quality",), 2, _quality),
    FaultType("level_rising_fast", ("water_level",), 1.5, _flood),
    FaultType("door_forced", ("door",), 0.2, _forced),
    FaultType("door_held_open", ("door",), 0.2, _held_open),
    FaultType("access_denied_repeatedly", ("door",), 0.3, _denied),
    FaultType("smoke_alarm", ("smoke",), 0.5, _smoke),
    FaultType("camera_video_loss", ("camera",), 1, _video_loss),
    FaultType("battery_low", ("door", "smoke", "waste_bin"), 6, _battery),
    FaultType("value_stuck", ("smoke",), 10, _stuck),
    FaultType("device_silent", ("camera", "door"), 3, _silent),
)}


@dataclass(frozen=True)
class Injected:
    device: str
    type: str
    start_s: float
    end_s: float


def select(spec: str) -> list[FaultType]:
    """``all`` or a comma-separated list of fault type names."""
    if spec == "all":
        return list(TYPES.values())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in TYPES]
    if unknown:
        raise ValueError(f"unknown fault type(s) {', '.join(unknown)}; "
                         f"known: {', '.join(TYPES)}")
    return [TYPES[n] for n in names]


def plan(devices: Sequence[Device], types: Sequence[FaultType], start_s: float,
         end_s: float, rng: random.Random, per_type: int = 2,
         max_hours: float | None = None) -> list[Injected]:
    """Faults within [start_s, end_s]: ``per_type`` of each type on distinct devices, never
    two at once on one device; ``max_hours`` shortens them (a short live run)."""
    busy: dict[str, list[tuple[float, float]]] = {}
    out = []
    for fault in types:
        candidates = [d.id for d in devices if d.kind in fault.kinds
                      and all(str(d.attrs.get(k)) == v for k, v in fault.attrs)]
        rng.shuffle(candidates)
        length = min(fault.hours, max_hours or fault.hours) * 3600
        earliest = start_s + fault.needs_days * 86_400
        if earliest + length > end_s:
            continue
        for device in candidates[:per_type]:
            begin = _start(fault, rng.uniform(earliest, end_s - length), rng)
            if begin + length > end_s or \
                    any(a < begin + length and begin < b for a, b in busy.get(device, [])):
                continue
            busy.setdefault(device, []).append((begin, begin + length))
            out.append(Injected(device, fault.name, begin, begin + length))
    return out


def _start(fault: FaultType, begin: float, rng: random.Random) -> float:
    """Move ``begin`` to the next time of day the fault is meant for (lamps: night, day)."""
    if fault.local_hours is None or fault.hours * 3600 > 86_400:
        return begin
    first, last = fault.local_hours
    local_day = (begin + 8 * 3600) // 86_400 * 86_400 - 8 * 3600
    moment = local_day + rng.uniform(first, last) * 3600 - fault.hours * 3600 / 2
    return moment if moment >= begin else moment + 86_400


def active(faults: Sequence[Injected], now_s: float) -> list[tuple[FaultType, float]]:
    """(fault type, seconds since it began) of ``faults`` (one device's) active at ``now_s``."""
    return [(TYPES[f.type], now_s - f.start_s) for f in faults if f.start_s <= now_s < f.end_s]


def write_truth(path: Path, injected: Sequence[Injected]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["device", "type", "start", "end"])
        for f in sorted(injected, key=lambda f: f.start_s):
            writer.writerow([f.device, f.type, _iso(f.start_s), _iso(f.end_s)])


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")
