"""Green-community KPIs: per community, the indicators telemetry can measure, against
their thresholds, written to ``community_kpi``; and each city's share of communities
meeting all of them, against the provincial target.

Computed from InfluxDB over a window (InfluxQL, so the same works on 1.x, 2.x and 3.x) and
from the registry. Every indicator is a float field; ``meets_target`` is a bool and
``meets`` the same as 1.0 / 0.0, so a dashboard's ``mean(meets) GROUP BY city`` is the
city's share.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
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


#: What each indicator needs before it gives a verdict: ``registry`` (device counts only:
#: always), ``history`` (its readings for ``kpi.min_history_h``), ``day`` (24 h of its
#: readings: a mean over every hour of the day, and a night), ``night`` (its readings over a
#: whole night, 18:00 to 06:00 China time), and whose readings: a kind, ``inlet`` (inlet
#: water meters) or ``any``.
NEEDS: dict[str, tuple[str, str]] = {
    "lamps_per_100_households": ("registry", "streetlight"),
    "lamp_availability": ("history", "streetlight"),
    "energy_saving": ("night", "streetlight"),
    "bin_overflow_rate": ("history", "waste_bin"),
    "water_quality_compliance": ("history", "water_quality"),
    "leak_indicator": ("day", "inlet"),
    "security_per_100_households": ("registry", "door"),
    "device_online_rate": ("history", "any"),
}
assert set(NEEDS) == set(INDICATORS)
CST_MS = 8 * 3_600_000
NIGHT_END_H, NIGHT_HOURS = 6, 12
#: The night's minimum flow is taken between 02:00 and 05:00 China time: a bucket of the
#: 3-hour grid InfluxDB groups by (from 00:00 UTC, so 02:00 China time is on it).
NIGHT_MIN_START_H, NIGHT_MIN_H = 2, 3


@dataclass
class CommunityKpi:
    community: str
    city: str
    values: dict[str, float]
    passed: dict[str, bool]
    #: indicator -> whether the data is enough for a verdict (see NEEDS).
    enough: dict[str, bool] = field(default_factory=dict)
    name: str = ""

    @property
    def assessing(self) -> bool:
        """Some indicator lacks the data for a verdict: neither meeting nor failing."""
        return not all(self.enough.get(n, True) for n in self.passed)

    @property
    def meets(self) -> bool:
        return not self.assessing and all(self.passed.values())

    def verdict(self, name: str) -> str:
        """``meets``, ``fails`` or ``not_enough_data`` (keys of ``devices.labels.WORDS``)."""
        if not self.enough.get(name, True):
            return "not_enough_data"
        return "meets" if self.passed[name] else "fails"


def _by_community(series: list[dict[str, Any]]) -> dict[str, float]:
    return {s["tags"]["community"]: float(s["values"][0][1] or 0.0) for s in series}


def _first_ms(series: list[dict[str, Any]]) -> dict[str, int]:
    """community -> the time of its first reading in the window."""
    return {s["tags"]["community"]: int(s["values"][0][0]) for s in series}


async def compute(registry: Registry, query: Query, settings: KpiSettings,
                  now_ms: int | None = None) -> list[CommunityKpi]:
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
        # The minimum of each 3-hour bucket with readings (fill(none)); the night's is the
        # bucket of 02:00-05:00 China time (18:00-21:00 UTC, on the buckets' grid), over the
        # window's mean.
        f"SELECT min(flow_m3h) FROM water_meter WHERE {window} AND role = 'inlet' "
        f"GROUP BY community, time({NIGHT_MIN_H}h) fill(none)",
        f"SELECT mean(flow_m3h) FROM water_meter WHERE {window} AND role = 'inlet' "
        "GROUP BY community",
        # The first reading's time of each community (no field is in every reading, so the
        # first row of any field: LIMIT 1 is per group).
        f"SELECT flow_m3h FROM water_meter WHERE {window} AND role = 'inlet' "
        "GROUP BY community LIMIT 1",
        *(f'SELECT *::field FROM "{kind}" WHERE {window} GROUP BY community LIMIT 1'
          for kind in schema.FIELDS),
        *(f'SELECT count(*) FROM "{kind}" WHERE {online} GROUP BY community, device'
          for kind in schema.FIELDS),
    ]
    results = await query(";\n".join(statements))   # one request, an answer a statement
    now = int(time.time() * 1000) if now_ms is None else now_ms
    kinds_n = len(schema.FIELDS)
    firsts = {"inlet": _first_ms(results[8])}
    for kind, result in zip(schema.FIELDS, results[9:9 + kinds_n], strict=True):
        firsts[kind] = _first_ms(result)
    firsts["any"] = {}
    for kind in schema.FIELDS:
        for community, first in firsts[kind].items():
            firsts["any"][community] = min(first, firsts["any"].get(community, first))
    seen: dict[str, int] = defaultdict(int)
    for result in results[9 + kinds_n:]:
        for community, n in _count_devices(result).items():
            seen[community] += n
    data = _Data(lamps_seen=_count_devices(results[0]),
                 saving={c: 1 - v / 100 for c, v in _by_community(results[1]).items()},
                 bins=_by_community(results[2]), full=_by_community(results[3]),
                 quality=_by_community(results[4]), good=_by_community(results[5]),
                 leak=_leak_indicator(results[6], _by_community(results[7])),
                 seen=seen, firsts=firsts)
    # One pass over the registry, not one per community: it may hold a million devices.
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for device in registry.devices.values():
        kinds[device.community.id][device.kind] += 1
        if device.attrs.get(schema.KIND_TAG["water_meter"]) == "inlet":
            kinds[device.community.id]["inlet"] += 1
    return [_community(registry, cid, kinds[cid], settings, data, now)
            for cid in sorted(registry.communities)]


@dataclass
class _Data:
    """What the queries answered, per community."""

    lamps_seen: dict[str, int]
    saving: dict[str, float]
    bins: dict[str, float]
    full: dict[str, float]
    quality: dict[str, float]
    good: dict[str, float]
    leak: dict[str, float]
    seen: dict[str, int]
    firsts: dict[str, dict[str, int]]


def _community(registry: Registry, cid: str, kinds: Counter[str], settings: KpiSettings,
               d: _Data, now_ms: int) -> CommunityKpi:
    community = registry.communities[cid]
    devices = sum(n for kind, n in kinds.items() if kind != "inlet")
    lamps = kinds["streetlight"]
    security = sum(kinds[k] for k in ("door", "smoke", "intrusion", "camera"))
    per_100 = 100 / max(1, community.households)
    values = {
        "lamps_per_100_households": lamps * per_100,
        "lamp_availability": d.lamps_seen.get(cid, 0) / max(1, lamps),
        "energy_saving": d.saving.get(cid, 0.0),
        "bin_overflow_rate": d.full.get(cid, 0.0) / d.bins[cid] if d.bins.get(cid) else 1.0,
        "water_quality_compliance": d.good.get(cid, 0.0) / d.quality[cid]
        if d.quality.get(cid) else 0.0,
        "leak_indicator": d.leak.get(cid, 1.0),
        "security_per_100_households": security * per_100,
        "device_online_rate": d.seen.get(cid, 0) / max(1, devices),
    }
    passed = {name: passes(settings, name, values[name]) for name in INDICATORS}
    registered = {**kinds, "any": devices}
    enough = {name: _enough(NEEDS[name], registered, d.firsts, cid, settings, now_ms)
              for name in INDICATORS}
    return CommunityKpi(cid, community.city, values, passed, enough, community.name)


def _enough(need: tuple[str, str], registered: Mapping[str, int],
            firsts: dict[str, dict[str, int]], cid: str, settings: KpiSettings,
            now_ms: int) -> bool:
    """Whether the community's data supports a verdict on an indicator needing ``need``.

    No device registered to measure it: enough (it fails; no data will ever come). Devices
    registered, their first reading too recent (or none yet): not enough."""
    what, source = need
    if what == "registry" or not registered.get(source):
        return True
    first = firsts[source].get(cid)
    if first is None:
        return False
    if what == "history":
        return now_ms - first >= settings.min_history_h * 3_600_000
    if what == "day":
        return now_ms - first >= 24 * 3_600_000
    return first <= last_night_start(now_ms)


def last_night_start(now_ms: int) -> int:
    """The start (18:00 China time) of the last whole night (ended 06:00) before ``now_ms``."""
    day = 86_400_000
    end = (now_ms + CST_MS - NIGHT_END_H * 3_600_000) // day * day \
        + NIGHT_END_H * 3_600_000 - CST_MS
    return end - NIGHT_HOURS * 3_600_000


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


def _leak_indicator(minimums: list[dict[str, Any]], means: dict[str, float]
                    ) -> dict[str, float]:
    """Mean over nights of (the night's minimum inlet flow / the mean flow over the window):
    the minimum night flow method's floor. A night's minimum is that of its readings between
    02:00 and 05:00 China time, the quietest hours; a night without readings then is left
    out. (A China-time day's minimum, as before, counted a day whose readings missed those
    hours, such as today's before 02:00, with its daytime floor: a leak that was not.)"""
    out = {}
    for s in minimums:
        community = s["tags"]["community"]
        mean = means.get(community)
        if not mean:
            continue
        nights = [row[1] for row in s["values"] if row[1] is not None
                  and (row[0] + CST_MS) % 86_400_000 == NIGHT_MIN_START_H * 3_600_000]
        if nights:
            out[community] = sum(nights) / len(nights) / mean
    return out


def points(kpis: list[CommunityKpi], now_ms: int) -> list[Point]:
    """``community_kpi`` points, one per community, and ``community_info`` (its name and
    the label the dashboards' community variable shows)."""
    out = []
    for k in kpis:
        tags = ((schema.CITY, k.city), (schema.COMMUNITY, k.community))
        fields: list[tuple[str, schema.FieldValue]] = [
            (name, float(value)) for name, value in k.values.items()]
        fields += [(f"{name}_ok", ok) for name, ok in k.passed.items()]
        fields += [(f"{name}_enough", k.enough.get(name, True)) for name in k.passed]
        fields += [("meets_target", k.meets), (schema.KPI_MEETS, 1.0 if k.meets else 0.0),
                   (schema.KPI_ASSESSING, k.assessing), (schema.KPI_NAME, k.name)]
        out.append(Point(schema.COMMUNITY_KPI, tags, tuple(fields), now_ms))
    return out + info_points([(k.city, k.community, k.name) for k in kpis], now_ms)


def info_points(names: Iterable[tuple[str, str, str]], now_ms: int) -> list[Point]:
    """``community_info`` from (city, community id, name): each community's name and the
    label the dashboards' community variable shows (``槐中路社区 (bd-mancheng-001)``)."""
    return [Point(schema.COMMUNITY_INFO,
                  ((schema.CITY, city), (schema.COMMUNITY, cid),
                   (schema.LABEL, schema.community_label(name, cid))),
                  ((schema.KPI_NAME, name),), now_ms) for city, cid, name in names]
