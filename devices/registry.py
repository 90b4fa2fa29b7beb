"""Communities and devices (CONTRACT section 3): loaded once, checked whole, looked up by id.

Loading reports every problem in the file at once, each with where it is, so an operator
fixes a registry in one pass rather than one error per restart.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson
import yaml

from devices import labels
from devices.payloads import KINDS
from devices.schema import KIND_TAG, KIND_TAG_VALUES
from devices.topics import is_identifier

#: The 11 prefecture-level cities of Hebei and the two directly administered county-level
#: cities (their display names: ``devices.labels``).
CITIES = tuple(city.id for city in labels.CITIES)


class RegistryError(ValueError):
    """Raised when a registry file cannot be read or holds invalid entries.

    ``problems`` lists every problem found, each naming the entry it is in.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"registry {source}: {len(problems)} problem(s):\n  {shown}{more}")


@dataclass(frozen=True, slots=True)
class Community:
    """A residential community taking part in the retrofit."""

    id: str
    name: str
    city: str
    district: str
    households: int


@dataclass(frozen=True, slots=True)
class Device:
    """A sensor or actuator, with its kind-specific attributes."""

    id: str
    kind: str
    community: Community
    lat: float | None = None
    lon: float | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind_tag(self) -> tuple[str, str] | None:
        """The (tag key, value) of the kind-specific tag (category / role), if any."""
        key = KIND_TAG.get(self.kind)
        return (key, str(self.attrs[key])) if key else None


@dataclass(frozen=True)
class Registry:
    """Every community and device, by id."""

    communities: Mapping[str, Community]
    devices: Mapping[str, Device]

    def device(self, device_id: str) -> Device | None:
        """The device with this id, or None when it is not registered."""
        return self.devices.get(device_id)


def load(path: str | Path) -> Registry:
    """Load and check a registry YAML file.

    Raises:
        RegistryError: the file is unreadable, not YAML, or has invalid entries.
    """
    try:
        with Path(path).open("rb") as handle:
            json_form = handle.read(64).lstrip()[:1] == b"{"
        if json_form:
            # JSON is YAML too (YAML 1.2 is a superset), and a JSON registry is read as a
            # stream, one device at a time: a million devices in seconds and well under a
            # gigabyte, where PyYAML takes minutes and gigabytes (README, Performance).
            return _from_json_stream(Path(path))
        # libyaml's loader when present: ten times faster than the pure-Python one.
        data = yaml.load(Path(path).read_text(encoding="utf-8"),
                         Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RegistryError(str(path), [f"cannot read: {exc}"]) from exc
    return from_mapping(data, source=str(path))


def _from_json_stream(path: Path) -> Registry:
    """A JSON registry, parsed item by item (two passes: communities may come last)."""
    problems: list[str] = []
    try:
        with path.open("rb") as handle:
            communities = _communities(list(ijson.items(handle, "communities.item",
                                                        use_float=True)), problems)
        with path.open("rb") as handle:
            devices = _devices(ijson.items(handle, "devices.item", use_float=True),
                               communities, problems)
    except (OSError, ijson.JSONError) as exc:
        raise RegistryError(str(path), [f"cannot read: {exc}"]) from exc
    if problems:
        raise RegistryError(str(path), problems)
    return Registry(communities=communities, devices=devices)


def from_mapping(data: Any, source: str = "<data>") -> Registry:
    """Build a registry from already-parsed YAML, checking every entry."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise RegistryError(source, ["top level must be a mapping with communities and devices"])
    communities = _communities(data.get("communities"), problems)
    devices = _devices(data.get("devices"), communities, problems)
    if problems:
        raise RegistryError(source, problems)
    return Registry(communities=communities, devices=devices)


def _entries(raw: Any, section: str, problems: list[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    if raw is None:
        problems.append(f"{section}: missing")
        return
    if not isinstance(raw, list | Iterator):      # an iterator: a streamed JSON array
        problems.append(f"{section}: must be a list")
        return
    for i, entry in enumerate(raw):
        where = f"{section}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        ident = entry.get("id")
        if not isinstance(ident, str) or not is_identifier(ident):
            problems.append(f"{where}: id {ident!r} is not an identifier [a-z0-9][a-z0-9-]{{0,63}}")
            continue
        yield f"{where} ({ident})", entry


def _communities(raw: Any, problems: list[str]) -> dict[str, Community]:
    out: dict[str, Community] = {}
    for where, entry in _entries(raw, "communities", problems):
        ident = entry["id"]
        if ident in out:
            problems.append(f"{where}: duplicate community id")
            continue
        city = entry.get("city")
        if city not in CITIES:
            problems.append(f"{where}: unknown city {city!r} (one of {', '.join(CITIES)})")
            continue
        district = entry.get("district")
        if not isinstance(district, str) or not is_identifier(district):
            # Districts become a tag value: keep them plain so line protocol never has to
            # carry a character InfluxDB 1.x cannot round-trip (a trailing backslash).
            problems.append(f"{where}: district {district!r} is not an identifier")
            continue
        households = entry.get("households", 0)
        if not isinstance(households, int) or isinstance(households, bool) or households < 0:
            problems.append(f"{where}: households must be a whole number >= 0")
            continue
        out[ident] = Community(
            id=ident, name=str(entry.get("name", ident)), city=city,
            district=district, households=households,
        )
    return out


def _devices(raw: Any, communities: Mapping[str, Community],
             problems: list[str]) -> dict[str, Device]:
    out: dict[str, Device] = {}
    # Devices of a kind mostly have the same attributes: one shared mapping for each
    # distinct set keeps a million-device registry small.
    shared: dict[Any, Mapping[str, Any]] = {}
    for where, entry in _entries(raw, "devices", problems):
        ident, kind, community_id = entry["id"], entry.get("kind"), entry.get("community")
        attrs = entry.get("attrs") or {}
        found = _device_problem(ident, kind, community_id, attrs, out, communities)
        if found:
            problems.append(f"{where}: {found}")
            continue
        # A list or mapping among the values is not hashable: that one is kept as it is.
        with contextlib.suppress(TypeError):
            attrs = shared.setdefault(tuple(attrs.items()), attrs)
        out[ident] = Device(
            id=ident, kind=sys.intern(str(kind)), community=communities[str(community_id)],
            lat=_coordinate(entry.get("lat")), lon=_coordinate(entry.get("lon")), attrs=attrs,
        )
    return out


def _device_problem(ident: str, kind: Any, community_id: Any, attrs: Any,
                    seen: Mapping[str, Device], communities: Mapping[str, Community]) -> str:
    """The first thing wrong with a device entry, or '' when it is fine."""
    if ident in seen:
        return "duplicate device id"
    if kind not in KINDS:
        return f"unknown kind {kind!r} (one of {', '.join(KINDS)})"
    if community_id not in communities:
        return f"unknown community {community_id!r}"
    if not isinstance(attrs, dict):
        return "attrs must be a mapping"
    tag = KIND_TAG.get(kind)
    if tag and attrs.get(tag) not in KIND_TAG_VALUES[tag]:
        return f"attrs.{tag} {attrs.get(tag)!r} is not one of {', '.join(KIND_TAG_VALUES[tag])}"
    return ""


def _coordinate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
