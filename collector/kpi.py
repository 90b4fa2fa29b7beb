"""Green-community KPIs: per community, the indicators telemetry can measure, against
their thresholds, written to ``community_kpi``; and each city's share of communities
meeting all of them, against the provincial target.

Computed from InfluxDB over a window (InfluxQL, so the same works on 1.x, 2.x and 3.x) and
from the registry. Every indicator is a float field; ``meets_target`` is a bool and
``meets`` the same as 1.0 / 0.0, so a dashboard's ``mean(meets) GROUP BY city`` is the
city's share.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from collector.settings import KpiSettings
from devices import schema
from devices.registry import Registry
from devices.schema import Point

Query = Callable[[str], Awaitable[list[list[dict[str, Any]]]]]

#: indicator -> (higher is better?, threshold attribute of KpiSettings)
INDICATORS: dict[str, tuple[bool, str]] = {
    "lamps_per_100_households": (True, "lamps_per_100_households"),
    "lamp_availability": (True, "lamp_availability"),
    "energy_saving": (True, "energy_saving"),
    "bin_overflow_rate": (False, "bin_overflow_rate_max"),
    "water_quality_compliance": (True, "water_quality_compliance"),
    "leak_indicator": (False, "leak_indicator_max"),
    "security_per_100_households": (True, "security_per_100_households"),
    "device_online_rate": (True, "device_online_rate"),
}
assert tuple(INDICATORS) == schema.KPI_INDICATORS, "schema.KPI_INDICATORS names these fields"


@dataclass
class CommunityKpi:
    community: str
    city: str
    values: dict[str, float]
    passed: dict[str, bool]

    @property
    def meets(self) -> bool:
        return all(self.passed.values())


def _by_community(series: list[dict[str, Any]]) -> dict[str, float]:
    return {s["tags"]["community"]: float(s["values"][0][1] or 0.0) for s in series}


async def compute(registry: Registry, query: Query, settings: KpiSettings) -> list[CommunityKpi]:
    """The indicators of every community in the registry."""
    window = f"time > now() - {int(settings.window_days * 24)}h"
    online = f"time > now() - {int(settings.online_window_h)}h"
    statements = [
        f"SELECT count(dim_pct) FROM streetlight WHERE {online} GROUP BY community, device",
        f"SELECT mean(dim_pct) FROM streetlight WHERE {window} AND dim_pct > 0 "
        "GROUP BY community",
        f"SELECT count(fill_pct) FROM waste_bin WHERE {window} GROUP BY community",
        f"SELECT count(fill_pct) FROM waste_bin WHERE {window} AND fill_pct >= 90 "
        "GROUP BY community",
        f"SELECT count(ph) FROM water_quality WHERE {window} GROUP BY community",
        f"SELECT count(ph) FROM water_quality WHERE {window} AND turbidity_ntu <= 1 "
        "AND chlorine_mg_l >= 0.05 AND ph >= 6.5 AND ph <= 8.5 GROUP BY community",
        f"SELECT min(flow_m3h), mean(flow_m3h) FROM water_meter WHERE {window} "
        "AND role = 'inlet' GROUP BY community, time(1d)",
        *(f'SELECT count(*) FROM "{kind}" WHERE {online} GROUP BY community, device'
          for kind in schema.FIELDS),
    ]
    results = [(await query(q))[0] for q in statements]
    lamps_seen = _count_devices(results[0])
    saving = {c: 1 - v / 100 for c, v in _by_community(results[1]).items()}
    bins, full = _by_community(results[2]), _by_community(results[3])
    quality, good = _by_community(results[4]), _by_community(results[5])
    leak = _leak_indicator(results[6])
    seen: dict[str, int] = defaultdict(int)
    for result in results[7:]:
        for community, n in _count_devices(result).items():
            seen[community] += n
    # One pass over the registry, not one per community: it may hold a million devices.
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for device in registry.devices.values():
        kinds[device.community.id][device.kind] += 1
    return [_community(registry, cid, kinds[cid], settings, lamps_seen, saving, bins, full,
                       quality, good, leak, seen) for cid in sorted(registry.communities)]


def _community(registry: Registry, cid: str, kinds: Counter[str], settings: KpiSettings,
               lamps_seen: dict[str, int], saving: dict[str, float], bins: dict[str, float],
               full: dict[str, float], quality: dict[str, float], good: dict[str, float],
               leak: dict[str, float], seen: dict[str, int]) -> CommunityKpi:
    community = registry.communities[cid]
    devices = sum(kinds.values())
    lamps = kinds["streetlight"]
    security = sum(kinds[k] for k in ("door", "smoke", "intrusion", "camera"))
    per_100 = 100 / max(1, community.households)
    values = {
        "lamps_per_100_households": lamps * per_100,
        "lamp_availability": lamps_seen.get(cid, 0) / max(1, lamps),
        "energy_saving": saving.get(cid, 0.0),
        "bin_overflow_rate": full.get(cid, 0.0) / bins[cid] if bins.get(cid) else 1.0,
        "water_quality_compliance": good.get(cid, 0.0) / quality[cid] if quality.get(cid)
        else 0.0,
        "leak_indicator": leak.get(cid, 1.0),
        "security_per_100_households": security * per_100,
        "device_online_rate": seen.get(cid, 0) / max(1, devices),
    }
    passed = {name: passes(settings, name, values[name]) for name in INDICATORS}
    return CommunityKpi(cid, community.city, values, passed)


def passes(settings: KpiSettings, name: str, value: float) -> bool:
    """Whether indicator ``name`` at ``value`` meets its threshold in ``settings``."""
    higher, limit_name = INDICATORS[name]
    limit = float(getattr(settings, limit_name))
    return value >= limit if higher else value <= limit


def _count_devices(series: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in series:
        out[s["tags"]["community"]] += 1
    return out


def _leak_indicator(series: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over days of (daily minimum / daily mean) of the inlet flow: the night floor."""
    out = {}
    for s in series:
        ratios = [row[1] / row[2] for row in s["values"]
                  if row[1] is not None and row[2]]
        if ratios:
            out[s["tags"]["community"]] = sum(ratios) / len(ratios)
    return out


def points(kpis: list[CommunityKpi], now_ms: int) -> list[Point]:
    """``community_kpi`` points: one per community."""
    out = []
    for k in kpis:
        fields: list[tuple[str, schema.FieldValue]] = [
            (name, float(value)) for name, value in k.values.items()]
        fields += [(f"{name}_ok", ok) for name, ok in k.passed.items()]
        fields += [("meets_target", k.meets), (schema.KPI_MEETS, 1.0 if k.meets else 0.0)]
        out.append(Point(schema.COMMUNITY_KPI, ((schema.CITY, k.city),
                                                (schema.COMMUNITY, k.community)),
                         tuple(fields), now_ms))
    return out


def city_shares(kpis: list[CommunityKpi]) -> dict[str, tuple[int, int]]:
    """city -> (communities meeting every indicator, communities)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for k in kpis:
        out[k.city][0] += k.meets
        out[k.city][1] += 1
    return {city: (m, n) for city, (m, n) in sorted(out.items())}
