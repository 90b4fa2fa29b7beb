"""``sct registry generate``: a registry of realistic communities across the province.

Device counts follow the number of households, as a retrofit plan would: a streetlight per
40 households, a sorting station (one bin per category) per 150, a meter per building
(about 60 households) plus the community's inlet and its rainwater reuse, a unit door and
a smoke detector per building, a camera per 150 households, and so on. Every kind is
present in every community.
"""

from __future__ import annotations

import random
from typing import Any

import yaml

from devices.schema import KIND_TAG_VALUES
from simulators.geography import CITIES, NAME_HEADS, NAME_TAILS, City

ABBREVIATION = {
    "streetlight": "sl", "waste_bin": "wb", "water_meter": "wm", "water_quality": "wq",
    "water_level": "wl", "door": "dr", "smoke": "sm", "intrusion": "in", "camera": "cm",
}


def generate(communities: int, seed: int = 1) -> dict[str, Any]:
    """A registry mapping (as written to YAML) for ``communities`` communities."""
    rng = random.Random(seed)
    comms: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    serial: dict[tuple[str, str], int] = {}
    for i in range(communities):
        # The first 13 cover every city once; the rest follow population weights.
        city = CITIES[i] if i < len(CITIES) else rng.choices(
            CITIES, weights=[c.weight for c in CITIES])[0]
        district = rng.choice(city.districts)
        serial[(city.code, district)] = serial.get((city.code, district), 0) + 1
        community = {
            "id": f"{city.code}-{district}-{serial[(city.code, district)]:03d}",
            "name": rng.choice(NAME_HEADS) + rng.choice(NAME_TAILS),
            "city": city.name,
            "district": district,
            "households": rng.randrange(300, 2600, 10),
        }
        comms.append(community)
        devices.extend(_devices(community, city, rng))
    return {"communities": comms, "devices": devices}


def _mix(households: int) -> list[tuple[str, dict[str, Any]]]:
    """(kind, attrs) for every device of a community with ``households`` households."""
    buildings = max(1, households // 60)
    mix: list[tuple[str, dict[str, Any]]] = []
    mix += [("streetlight", {"rated_power_w": 100})] * max(2, households // 40)
    for _ in range(max(1, households // 150)):
        mix += [("waste_bin", {"category": c, "capacity_l": 240})
                for c in KIND_TAG_VALUES["category"]]
    mix += [("water_meter", {"role": "inlet"})]
    mix += [("water_meter", {"role": "building"})] * buildings
    mix += [("water_meter", {"role": "rainwater"})]
    mix += [("water_quality", {})]
    mix += [("water_level", {"use": "rain_tank", "depth_m": 3.0})]
    if households > 1000:
        mix += [("water_level", {"use": "drainage_well", "depth_m": 5.0})]
    mix += [("door", {})] * buildings
    mix += [("smoke", {})] * buildings
    mix += [("intrusion", {})] * max(1, households // 800)
    mix += [("camera", {})] * max(1, households // 150)
    return mix


def _devices(community: dict[str, Any], city: City, rng: random.Random) -> list[dict[str, Any]]:
    counters: dict[str, int] = {}
    out = []
    for kind, attrs in _mix(community["households"]):
        counters[kind] = counters.get(kind, 0) + 1
        out.append({
            "id": f"{community['id']}-{ABBREVIATION[kind]}-{counters[kind]:04d}",
            "kind": kind,
            "community": community["id"],
            "lat": round(city.lat + rng.uniform(-0.05, 0.05), 5),
            "lon": round(city.lon + rng.uniform(-0.05, 0.05), 5),
            "attrs": dict(attrs),
        })
    return out


def to_yaml(data: dict[str, Any]) -> str:
    """The registry as YAML text (UTF-8, names unescaped)."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
