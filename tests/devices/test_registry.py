from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devices.registry import RegistryError, from_mapping, load
from simulators.registry_gen import generate, to_yaml


def base() -> dict[str, Any]:
    return {
        "communities": [{"id": "sjz-yuhua-001", "name": "槐中路社区", "city": "shijiazhuang",
                         "district": "yuhua", "households": 1200}],
        "devices": [
            {"id": "sjz-yuhua-001-sl-0001", "kind": "streetlight", "community": "sjz-yuhua-001",
             "lat": 38.0251, "lon": 114.5267, "attrs": {"rated_power_w": 100}},
            {"id": "sjz-yuhua-001-wb-0001", "kind": "waste_bin", "community": "sjz-yuhua-001",
             "attrs": {"category": "kitchen"}},
        ],
    }


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(RegistryError) as info:
        from_mapping(data)
    return info.value.problems


def test_the_contract_example_loads() -> None:
    registry = from_mapping(base())
    lamp = registry.device("sjz-yuhua-001-sl-0001")
    assert lamp is not None and lamp.community.city == "shijiazhuang"
    assert lamp.kind_tag is None
    assert registry.devices["sjz-yuhua-001-wb-0001"].kind_tag == ("category", "kitchen")
    assert registry.device("nope") is None


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda d: d["devices"].append(dict(d["devices"][0])), "duplicate device id"),
    (lambda d: d["communities"].append(dict(d["communities"][0])), "duplicate community id"),
    (lambda d: d["devices"][0].update(community="nowhere-001"), "unknown community 'nowhere-001'"),
    (lambda d: d["devices"][0].update(kind="toaster"), "unknown kind 'toaster'"),
    (lambda d: d["devices"][0].update(id="Bad_Id"), "is not an identifier"),
    (lambda d: d["communities"][0].update(id="Bad Id"), "is not an identifier"),
    (lambda d: d["communities"][0].update(city="beijing"), "unknown city 'beijing'"),
    (lambda d: d["communities"][0].update(district="Yu Hua"), "district"),
    (lambda d: d["devices"][1].update(attrs={}), "attrs.category None"),
    (lambda d: d["devices"][1].update(attrs={"category": "glass"}), "attrs.category 'glass'"),
])
def test_each_problem_is_named_with_where_it_is(change: Any, complaint: str) -> None:
    data = base()
    change(data)
    found = problems(data)
    assert any(complaint in p for p in found), found
    assert all(p.startswith(("devices[", "communities[")) for p in found)


def test_every_problem_is_reported_at_once() -> None:
    data = base()
    data["devices"][0]["kind"] = "toaster"
    data["devices"][1]["community"] = "nowhere-001"
    assert len(problems(data)) == 2


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("communities: [\n")
    with pytest.raises(RegistryError, match="cannot read"):
        load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(RegistryError, match="top level"):
        load(tmp_path / "list.yaml")


def test_generated_registries_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(to_yaml(generate(30, seed=5)), encoding="utf-8")
    registry = load(path)
    assert len(registry.communities) == 30


def test_a_json_registry_is_the_same_registry_read_as_a_stream(tmp_path: Path) -> None:
    data = generate(3, seed=4)
    (tmp_path / "r.yaml").write_text(to_yaml(data), encoding="utf-8")
    (tmp_path / "r.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert load(tmp_path / "r.json") == load(tmp_path / "r.yaml")


def test_a_json_registry_reports_its_problems(tmp_path: Path) -> None:
    data = generate(1, seed=4)
    data["devices"][3]["kind"] = "toaster"
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RegistryError, match=r"devices\[3\].*unknown kind 'toaster'"):
        load(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text(json.dumps(data)[:500], encoding="utf-8")
    with pytest.raises(RegistryError, match="cannot read"):
        load(tmp_path / "cut.json")
