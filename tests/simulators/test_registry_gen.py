from __future__ import annotations

import subprocess
import sys
from collections import Counter

import yaml

from devices.payloads import KINDS
from devices.registry import CITIES, from_mapping
from simulators.registry_gen import generate


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
    for kind in ("streetlight", "waste_bin", "water_meter", "door", "camera"):
        assert per[large.id][kind] > per[small.id][kind], kind
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
