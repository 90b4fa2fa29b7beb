"""``sct registry generate``: a registry of realistic communities across the province.

Device counts follow the number of households, as a retrofit plan would: a streetlight per
40 households, a sorting station (one bin per category) per 150, a meter per building
(about 60 households) plus the community's inlet and its rainwater reuse, a unit door and
a smoke detector per building, a camera per 150 households, and so on. Every kind is
present in every community.

Retrofits are not finished everywhere at once, and the goal board should show that: about a
third of the communities are still part-way, with only some of their streetlights or some of
their security devices installed (:data:`STAGES`). The stage is drawn from its own random
stream, so the rest of a registry does not depend on it.
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


#: retrofit stage -> (weight, share of streetlights installed, share of security installed)
STAGES: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    "complete": (0.65, (1.0, 1.0), (1.0, 1.0)),
    "lighting_underway": (0.20, (0.3, 0.7), (1.0, 1.0)),
    "security_underway": (0.15, (1.0, 1.0), (0.3, 0.6)),
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
        devices.extend(_devices(community, city, rng, _stage(seed, i)))
    return {"communities": comms, "devices": devices}


def _stage(seed: int, index: int) -> tuple[float, float]:
    """(share of streetlights, share of security devices) installed in community ``index``."""
    rng = random.Random(f"{seed}/stage/{index}")
    weights = [w for w, _, _ in STAGES.values()]
    _, lamps, security = rng.choices(list(STAGES.values()), weights=weights)[0]
    return rng.uniform(*lamps), rng.uniform(*security)


def _mix(households: int, lamps: float = 1.0,
         security: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
    """(kind, attrs) for every device of a community with ``households`` households, of
    which the shares ``lamps`` of streetlights and ``security`` of security devices are
    installed so far."""
    buildings = max(1, households // 60)

    def part(n: int, share: float) -> int:
        return max(1, round(n * share))

    mix: list[tuple[str, dict[str, Any]]] = []
    mix += [("streetlight", {"rated_power_w": 100})] * max(2, part(households // 40, lamps))
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
    mix += [("door", {})] * part(buildings, security)
    mix += [("smoke", {})] * part(buildings, security)
    mix += [("intrusion", {})] * part(max(1, households // 800), security)
    mix += [("camera", {})] * part(max(1, households // 150), security)
    return mix


def _devices(community: dict[str, Any], city: City, rng: random.Random,
             stage: tuple[float, float]) -> list[dict[str, Any]]:
    counters: dict[str, int] = {}
    out = []
    for kind, attrs in _mix(community["households"], *stage):
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
