"""How each kind of simulated device behaves over a day, as a function of wall-clock time.

Every device keeps a little state (its counters, its battery, when its bin was last
emptied) and answers ``step(now)`` with one telemetry object and any events since the last
step. Local time is China Standard Time (UTC+8). Randomness comes from the device's own
seeded generator, so a run is reproducible for a given seed and schedule.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from devices.registry import Device
from simulators import sun
from simulators.faults import Injected, active

CST_OFFSET_S = 8 * 3600
Obj = dict[str, Any]


def local_hour(epoch_s: float) -> float:
    """Hour of the day (0-24, fractional) in China Standard Time."""
    return ((epoch_s + CST_OFFSET_S) % 86_400) / 3600


def ambient_c(epoch_s: float) -> float:
    """Outdoor temperature in Hebei: -3 °C in January to 27 °C in July, ±5 °C over a day."""
    day_of_year = ((epoch_s + CST_OFFSET_S) / 86_400) % 365.25
    seasonal = 12.0 - 15.0 * math.cos(2 * math.pi * (day_of_year - 15) / 365.25)
    daily = 5.0 * math.cos(2 * math.pi * (local_hour(epoch_s) - 15) / 24)
    return seasonal + daily


def _peak(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def water_demand(hour: float) -> float:
    """Relative water use over a day: a morning and an evening peak, a low night minimum."""
    return 0.25 + 1.1 * _peak(hour, 7.5, 1.2) + 0.5 * _peak(hour, 12.3, 1.0) \
        + 0.9 * _peak(hour, 19.8, 1.8)


def commuting(hour: float) -> float:
    """How busy the doors are: peaks at 7-9 and 17-19, quiet at night."""
    day = 0.3 if 6 <= hour < 22 else 0.03
    return min(1.0, day + _peak(hour, 8.0, 0.8) + _peak(hour, 18.0, 1.0))


class SimDevice:
    """One simulated device: its registry entry, its generator and its running state."""

    def __init__(self, device: Device, rng: random.Random, start_s: float,
                 faults: Sequence[Injected] = (), incidents: bool = True) -> None:
        self.device = device
        self.rng = rng
        #: Rare spontaneous incidents (a forced door, a smoke alarm...). Off when faults are
        #: injected, so that the ground truth lists every incident there is.
        self.incidents = incidents
        self.last_s = start_s
        self.state: dict[str, Any] = {}
        self.faults = list(faults)
        self._behave = BEHAVIOURS[device.kind]

    def step(self, now_s: float) -> tuple[Obj, list[Obj]]:
        """The telemetry object for ``now_s`` and the events since the previous step.

        An injected fault changes them while it lasts; an empty object means the device
        says nothing this time (a silent device).
        """
        dt = max(0.0, now_s - self.last_s)
        self.last_s = now_s
        obj, events = self._behave(self, now_s, dt)
        for fault, elapsed in active(self.faults, now_s) if self.faults else ():
            fault.change(obj, events, self.rng, elapsed)
        return obj, events

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def incident(self, probability: float) -> bool:
        """A rare spontaneous incident, when they are on."""
        return self.rng.random() < probability and self.incidents

    def battery(self, drain_per_step: float = 0.0005) -> float:
        level: float = self.state.setdefault("battery", self.rng.uniform(55, 100))
        level = max(5.0, level - self.rng.uniform(0, drain_per_step))
        self.state["battery"] = level
        return round(level, 2)


def _streetlight(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    d, rng = sim.device, sim.rng
    lat, lon = d.lat or 38.0, d.lon or 114.5
    altitude = sun.altitude_deg(lat, lon, now)
    on = altitude < sun.HORIZON_DEG + rng.uniform(-0.5, 0.5)  # the photocell is not exact
    hour = local_hour(now)
    dim = 0.0 if not on else (100.0 if hour >= 17 or hour < 0.5 else 50.0)  # half after midnight
    rated = float(d.attrs.get("rated_power_w", 100))
    power = rated * dim / 100 * rng.uniform(0.96, 1.03) if on else rng.uniform(0.8, 1.5)
    voltage = rng.gauss(222.0, 2.5)
    energy = sim.state.setdefault("energy", rng.uniform(50, 3000)) + power * dt / 3.6e6
    sim.state["energy"] = energy
    # Civil twilight: 0 to 400 lx as the sun climbs from -6 to 0 degrees; daylight above.
    lux = 400 + 100_000 * math.sin(math.radians(altitude)) * rng.uniform(0.3, 1.0) \
        if altitude > 0 else max(0.0, 400 * (altitude + 6) / 6) if altitude > -6 \
        else rng.uniform(0, 2)
    obj = {"on": on, "dim_pct": dim, "power_w": round(power, 2), "voltage_v": round(voltage, 1),
           "current_a": round(power / voltage, 4), "energy_kwh": round(energy, 4),
           "lux": round(max(0.0, lux), 1),
           "temp_c": round(ambient_c(now) + (18 if on else 0) + rng.gauss(0, 0.5), 1)}
    events = [{"type": "fault", "code": rng.choice(["E01", "E07", "E12"])}] \
        if sim.incident(1e-4) else []
    return obj, events


# Waste collection: (hours of the day, every n days) per category, and fill speed.
COLLECTION = {"kitchen": ((7, 19), 1), "other": ((7,), 1), "recyclable": ((8,), 2),
              "hazardous": ((9,), 7)}
FILL_PCT_PER_HOUR = {"kitchen": 6.5, "other": 3.2, "recyclable": 1.5, "hazardous": 0.4}
KG_PER_LITRE = {"kitchen": 0.5, "other": 0.2, "recyclable": 0.08, "hazardous": 0.3}


def last_collection_s(category: str, now_s: float) -> float:
    """When the bin was last emptied, on its category's schedule (local time)."""
    hours, every_days = COLLECTION[category]
    local = now_s + CST_OFFSET_S
    day = int(local // 86_400)
    for back in range(0, 8 * every_days):
        candidate_day = day - back
        if candidate_day % every_days:
            continue
        for hour in sorted(hours, reverse=True):
            moment = candidate_day * 86_400 + hour * 3600
            if moment <= local:
                return moment - CST_OFFSET_S
    return now_s - 86_400.0 * every_days


def _waste_bin(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    d, rng = sim.device, sim.rng
    category = str(d.attrs["category"])
    households_per_station = d.community.households / max(1, d.community.households // 150)
    emptied_at = last_collection_s(category, now)
    events = []
    if sim.state.get("emptied_at", emptied_at) != emptied_at:
        events.append({"type": "emptied"})
    sim.state["emptied_at"] = emptied_at
    speed = sim.state.setdefault("speed", rng.uniform(0.7, 1.3)) * households_per_station / 200
    # Collections are planned so that a bin never quite fills: 85 % at most.
    fill = min(85.0, FILL_PCT_PER_HOUR[category] * speed * (now - emptied_at) / 3600)
    capacity = float(d.attrs.get("capacity_l", 240))
    obj = {"fill_pct": round(fill, 1),
           "weight_kg": round(capacity * KG_PER_LITRE[category] * fill / 100, 2),
           "temp_c": round(ambient_c(now) + (3 if category == "kitchen" else 0)
                           + rng.gauss(0, 0.4), 1),
           "battery_pct": sim.battery(), "lid_open": sim.chance(0.03 * commuting(local_hour(now)))}
    return obj, events


def _water_meter(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    d, rng = sim.device, sim.rng
    role, hour = d.attrs["role"], local_hour(now)
    community_m3h = d.community.households * 0.3 / 24  # 300 litres a household a day
    buildings = max(1, d.community.households // 60)
    if role == "inlet":
        mean = community_m3h
    elif role == "building":
        mean = community_m3h / buildings
    else:  # rainwater reuse: garden watering in the early morning and evening
        mean = 0.8 if 5 <= hour < 8 or 18 <= hour < 20 else 0.0
    demand = water_demand(hour) if role != "rainwater" else 1.0
    flow = max(0.0, mean * demand * rng.uniform(0.9, 1.1))
    total = sim.state.setdefault("total", rng.uniform(1_000, 90_000)) + flow * dt / 3600
    sim.state["total"] = total
    pressure = (380 if role == "inlet" else 320) - 45 * (demand - 0.25) + rng.gauss(0, 3)
    obj = {"flow_m3h": round(flow, 3), "total_m3": round(total, 3),
           "pressure_kpa": round(pressure, 1), "temp_c": round(rng.gauss(14.0, 0.3), 2)}
    return obj, []


def _water_quality(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    rng = sim.rng
    obj = {"turbidity_ntu": round(rng.lognormvariate(math.log(0.3), 0.25), 3),
           "chlorine_mg_l": round(max(0.0, rng.gauss(0.35, 0.04)), 3),
           "ph": round(rng.gauss(7.4, 0.08), 2),
           "conductivity_us_cm": round(rng.gauss(500, 15), 1),
           "temp_c": round(rng.gauss(14.0, 0.3), 2)}
    return obj, []


def _water_level(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    d, rng = sim.device, sim.rng
    depth = float(d.attrs.get("depth_m", 3.0))
    low, high = (20.0, 80.0) if d.attrs.get("use") != "drainage_well" else (5.0, 30.0)
    pct = sim.state.setdefault("pct", rng.uniform(low, high))
    pct = min(high, max(low, pct + rng.gauss(0, 0.05)))
    sim.state["pct"] = pct
    return {"level_m": round(depth * pct / 100, 3), "level_pct": round(pct, 2)}, []


def _door(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    rng, busy = sim.rng, commuting(local_hour(now))
    events: list[Obj] = []
    if sim.chance(0.4 * busy):
        method = rng.choices(("card", "face", "code", "app"), (5, 3, 1, 1))[0]
        events.append({"type": "access", "result": "denied" if sim.chance(0.03) else "granted",
                       "method": method})
    if sim.incident(1e-4):
        events.append({"type": "forced"})
    if sim.incident(5e-4):
        events.append({"type": "held_open"})
    return {"open": sim.chance(0.1 * busy), "battery_pct": sim.battery()}, events


def _smoke(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    rng = sim.rng
    events = [{"type": t} for t, p in (("test", 2e-4), ("alarm", 2e-5), ("tamper", 2e-5))
              if sim.incident(p)]
    alarm = any(e["type"] == "alarm" for e in events)
    obj = {"smoke_db_m": round(abs(rng.gauss(0.02, 0.01)) + (5.0 if alarm else 0.0), 3),
           "alarm": alarm, "battery_pct": sim.battery(),
           "temp_c": round(rng.gauss(21.0, 1.0), 1)}
    return obj, events


def _intrusion(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    hour = local_hour(now)
    armed = hour >= 22 or hour < 6
    events = [{"type": "motion"}] if armed and sim.chance(0.01) else []
    events += [{"type": t} for t, p in (("intrusion", 1e-5), ("tamper", 1e-5))
               if sim.incident(p)]
    return {"armed": armed, "battery_pct": sim.battery()}, events


def _camera(sim: SimDevice, now: float, dt: float) -> tuple[Obj, list[Obj]]:
    storage = sim.state.setdefault("storage", sim.rng.uniform(40, 90)) + 0.002
    sim.state["storage"] = storage if storage < 95 else 40.0
    video_loss = sim.incident(5e-5)
    events = [{"type": "video_loss"}] if video_loss else []
    events += [{"type": "tamper"}] if sim.incident(1e-5) else []
    return {"recording": not video_loss, "storage_pct": round(storage, 2)}, events


Behaviour = Callable[[SimDevice, float, float], tuple[Obj, list[Obj]]]

BEHAVIOURS: dict[str, Behaviour] = {
    "streetlight": _streetlight, "waste_bin": _waste_bin, "water_meter": _water_meter,
    "water_quality": _water_quality, "water_level": _water_level, "door": _door,
    "smoke": _smoke, "intrusion": _intrusion, "camera": _camera,
}
