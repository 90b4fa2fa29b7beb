from __future__ import annotations

import subprocess
import sys
from collections import Counter

import yaml

from devices.payloads import KINDS
from devices.registry import CITIES, from_mapping
from simulators.registry_gen import _mix, generate


def test_every_city_and_every_kind_in_every_community() -> None:
    registry = from_mapping(generate(40, seed=3))
    assert {c.city for c in registry.communities.values()} == set(CITIES)
    kinds: dict[str, set[str]] = {c: set() for c in registry.communities}
    for device in registry.devices.values():
        kinds[device.community.id].add(device.kind)
    assert all(found == set(KINDS) for found in kinds.values())


def test_device_mix_scales_with_households() -> None:
    registry = from_mapping(generate(40, seed=3))
    per: dict[str, Counter[str]] = {c: Counter() for c in registry.communities}
    for device in registry.devices.values():
        per[device.community.id][device.kind] += 1
    small = min(registry.communities.values(), key=lambda c: c.households)
    large = max(registry.communities.values(), key=lambda c: c.households)
    for kind in ("waste_bin", "water_meter"):
        assert per[large.id][kind] > per[small.id][kind], kind
    # Streetlights and security follow households too, in communities at the same stage.
    full, half = Counter(k for k, _ in _mix(2400)), Counter(k for k, _ in _mix(2400, 0.5, 0.5))
    for kind in ("streetlight", "door", "smoke", "camera"):
        assert full[kind] > Counter(k for k, _ in _mix(600))[kind], kind
        assert half[kind] == round(full[kind] / 2), kind
    bins = Counter(d.attrs["category"] for d in registry.devices.values()
                   if d.kind == "waste_bin")
    assert len(set(bins.values())) == 1, "one bin of each category per sorting station"


def test_same_seed_same_registry_and_the_cli_writes_yaml() -> None:
    assert generate(5, seed=9) == generate(5, seed=9)
    assert generate(5, seed=9) != generate(5, seed=10)
    run = subprocess.run([sys.executable, "-m", "collector", "registry", "generate",
                          "--communities", "5", "--seed", "9"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0
    assert yaml.safe_load(run.stdout) == generate(5, seed=9)


def test_some_communities_are_part_way_through_their_retrofit() -> None:
    registry = from_mapping(generate(60, seed=3))
    per: dict[str, Counter[str]] = {c: Counter() for c in registry.communities}
    for device in registry.devices.values():
        per[device.community.id][device.kind] += 1
    lamps = {c: per[c]["streetlight"] * 100 / registry.communities[c].households for c in per}
    security = {c: sum(per[c][k] for k in ("door", "smoke", "intrusion", "camera")) * 100
                / registry.communities[c].households for c in per}
    # Against the KPI defaults (2 lamps, 3 security devices per 100 households).
    short_of_lamps = sum(v < 2.0 for v in lamps.values())
    short_of_security = sum(v < 3.0 for v in security.values())
    complete = sum(lamps[c] >= 2.0 and security[c] >= 3.0 for c in per)
    assert 5 <= short_of_lamps <= 25 and 3 <= short_of_security <= 20, (short_of_lamps,
                                                                          short_of_security)
    assert complete >= 30
