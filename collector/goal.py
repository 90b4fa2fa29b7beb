"""The programme's milestones, per city and for the province, written to ``city_kpi``.

The provincial plan: by 2020 at least 5 green communities in each city with districts (its
districts and county-level cities included) and at least 2 in Dingzhou and Xinji; by 2021,
30 % of each city's urban communities; by 2022, 60 % (``kpi.city_minimums``,
``kpi.city_minimums_county_level``, ``kpi.city_targets``). A community counts once it meets
every indicator (``collector/kpi.py``); one still being assessed (not enough data for some
indicator) does not. A share's denominator is the city's number of urban communities
(``kpi.city_communities``; default the registry's count, which may hold only the
communities retrofitted so far).

In cluster mode each collector computes the communities of its own partitions; the roll-up
takes every other community's latest ``community_kpi`` from InfluxDB, so each collector
writes whole-city figures (the last writer of an interval wins; they agree once every
collector has written its communities).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collector import kpi
from collector.kpi import CommunityKpi
from collector.settings import KpiSettings
from devices import labels, schema
from devices.registry import Registry
from devices.schema import Point

Query = Callable[[str], Awaitable[list[list[dict[str, Any]]]]]


@dataclass(frozen=True)
class Milestone:
    year: int
    minimum: int | None = None    # a count of green communities
    share: float | None = None    # a share of the city's urban communities

    def met(self, meeting: int, communities: int) -> bool:
        if self.minimum is not None:
            return meeting >= self.minimum
        return communities > 0 and meeting / communities >= (self.share or 0.0)


def milestones(settings: KpiSettings, city: str) -> list[Milestone]:
    """The plan's milestones for ``city`` (or ``schema.PROVINCE``: the sum of the cities' counts
    is given by :func:`province`), by year."""
    county = labels.BY_ID[city].county_level if city in labels.BY_ID else False
    counts = settings.city_minimums_county_level if county else settings.city_minimums
    return [Milestone(y, minimum=counts.get(y, settings.city_minimums.get(y, 0)))
            if kind == "count" else Milestone(y, share=settings.city_targets[y])
            for y, kind in settings.plan().items()]


@dataclass
class CityGoal:
    city: str
    meeting: int = 0
    assessing: int = 0
    failing: int = 0
    #: the share's denominator: the city's urban communities
    communities: int = 0
    plan: list[Milestone] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.meeting / self.communities if self.communities else 0.0

    def met(self) -> dict[int, bool]:
        """year -> whether that milestone is met today."""
        return {m.year: m.met(self.meeting, self.communities) for m in self.plan}


#: community -> (city, meets, assessing): a community's latest verdict.
Latest = dict[str, tuple[str, bool, bool]]


async def latest(query: Query, settings: KpiSettings) -> Latest:
    """Every community's latest verdict written in the last two KPI intervals."""
    span = int(settings.interval_s * 2)
    series = (await query(f"SELECT last({schema.KPI_MEETS}) AS m, last("
                          f"{schema.KPI_ASSESSING}) AS a FROM {schema.COMMUNITY_KPI} WHERE "
                          f"time > now() - {span}s GROUP BY community, city"))[0]
    out = {}
    for s in series:
        _, meets, assessing = s["values"][0]
        out[s["tags"]["community"]] = (s["tags"]["city"], meets == 1, assessing is True)
    return out


def rollup(registry: Registry, fresh: Iterable[CommunityKpi], earlier: Latest,
           settings: KpiSettings) -> list[CityGoal]:
    """Each city's goal figures, from this run's verdicts over the ``earlier`` ones."""
    verdicts = dict(earlier)
    verdicts.update({k.community: (k.city, k.meets, k.assessing) for k in fresh})
    registered: dict[str, int] = {}
    for community in registry.communities.values():
        registered[community.city] = registered.get(community.city, 0) + 1
    cities = [c.id for c in labels.CITIES
              if c.id in registered or c.id in settings.city_communities]
    goals = {c: CityGoal(c, communities=settings.city_communities.get(c, registered.get(c, 0)),
                         plan=milestones(settings, c)) for c in cities}
    for cid, (city, meets, assessing) in verdicts.items():
        goal = goals.get(city)
        if goal is None or cid not in registry.communities:
            continue   # a community since removed from the registry
        if meets:
            goal.meeting += 1
        elif assessing:
            goal.assessing += 1
        else:
            goal.failing += 1
    return list(goals.values())


def province(cities: list[CityGoal]) -> CityGoal:
    """The province's total: the cities' counts summed; a count milestone is the sum of
    the cities' minimums, a share milestone the same share of all urban communities."""
    total = CityGoal(schema.PROVINCE, sum(c.meeting for c in cities),
                     sum(c.assessing for c in cities), sum(c.failing for c in cities),
                     sum(c.communities for c in cities))
    years = sorted({m.year for c in cities for m in c.plan})
    for year in years:
        plans = [m for c in cities for m in c.plan if m.year == year]
        if all(m.minimum is not None for m in plans):
            total.plan.append(Milestone(year, minimum=sum(m.minimum or 0 for m in plans)))
        else:
            total.plan.append(Milestone(year, share=plans[0].share))
    return total


def points(goals: list[CityGoal], target_year: int, now_ms: int) -> list[Point]:
    """``city_kpi`` points: one per city and one for the province (``city=province``)."""
    out = []
    for g in [*goals, province(goals)]:
        met = g.met()
        fields: list[tuple[str, schema.FieldValue]] = [
            ("meeting", g.meeting), ("assessing", g.assessing), ("failing", g.failing),
            ("communities", g.communities), ("share", float(g.share)),
            ("on_track", met.get(target_year, False))]
        for m in g.plan:
            fields.append((f"ok_{m.year}", met[m.year]))
            fields.append((f"minimum_{m.year}", m.minimum) if m.minimum is not None
                          else (f"target_{m.year}", float(m.share or 0.0)))
        out.append(Point(schema.CITY_KPI, ((schema.CITY, g.city),), tuple(fields), now_ms))
    return out


async def evaluate(registry: Registry, query: Query, settings: KpiSettings, stamp_ms: int,
                   only: set[str] | None = None
                   ) -> tuple[list[CommunityKpi], list[CityGoal], list[Point]]:
    """One KPI run, as the collector's job and ``sct kpi`` both do it: the communities'
    indicators (only those in ``only``, cluster mode: the active partitions'), each city's
    goal over them and the other communities' latest verdicts, and the points of both,
    stamped ``stamp_ms``."""
    kpis = await kpi.compute(registry, query, settings)
    if only is not None:
        kpis = [k for k in kpis if k.community in only]
    cities = rollup(registry, kpis, await latest(query, settings), settings)
    return kpis, cities, [*kpi.points(kpis, stamp_ms),
                          *points(cities, settings.target_year, stamp_ms)]
