"""The dashboards, one function each. Names of measurements and fields come from
``devices.schema``; every query is InfluxQL on the provisioned datasource.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    DEVICE_FILTER,
    FILTER,
    board,
    city_names,
    device_map,
    gauge_bars,
    grid,
    series,
    shown_as,
    single,
    values_shown_as,
    variables,
)
from dashboards.texts import Texts
from devices import labels, schema
from devices.labels import Language

T = "$timeFilter"
I = "time($__interval)"  # noqa: E741 - reads like the Grafana macro it stands for
C = schema.COLLECTOR
OPEN_ALERT_LOOKBACK = "30d"


def overview(t: Texts) -> Any:
    b = variables(t, board("sct-overview", t("Smart communities: overview"), ["overview"]))
    online = (f"SELECT count(online) FROM (SELECT last(online) AS online FROM "
              f"{schema.DEVICE_STATUS} WHERE {T} AND {FILTER} GROUP BY device) "
              "WHERE online = true")
    # Open: the last state of each (device, rule) is "raised". Over the alerts' whole
    # retention rather than the time range, so an alert raised last week and still open counts.
    open_alerts = (f"SELECT count(state) FROM (SELECT last(state) AS state FROM {schema.ALERT} "
                   f"WHERE time > now() - {OPEN_ALERT_LOOKBACK} AND {FILTER} GROUP BY device, "
                   "rule, severity) WHERE state = 'raised' GROUP BY severity")
    return (b.with_panel(single(t("Devices online (last status)"), online))
            .with_panel(single(t("Communities reporting"),
                               f"SELECT count(last) FROM (SELECT last(battery_pct) FROM door "
                               f"WHERE {T} AND {FILTER} GROUP BY community)"))
            .with_panel(single(t("Open alerts by severity"), open_alerts, w=12))
            .with_panel(series(t("Readings accepted per second"),
                               f"SELECT non_negative_derivative(last(accepted), 1s) FROM {C} "
                               f"WHERE {T} GROUP BY {I}", unit="reqps", w=24))
            .with_panel(device_map(t("Devices by last status (green online, red offline)"),
                                   f"SELECT last(online) AS online, last(lat) AS lat, last(lon) "
                                   f"AS lon FROM {schema.DEVICE_STATUS} WHERE {T} AND {FILTER} "
                                   "GROUP BY device, kind, community")))


def lighting(t: Texts) -> Any:
    b = variables(t, board("sct-lighting", t("Streetlights"), ["lighting"]), "streetlight")
    where = f"WHERE {T} AND {DEVICE_FILTER}"
    return (b.with_panel(series(t("Lamps dimming level (mean %)"),
                                f"SELECT mean(dim_pct) FROM streetlight {where} "
                                f"GROUP BY {I}, community", unit="percent"))
            .with_panel(series(t("Ambient light (lx, mean) — dark below 10 lx"),
                               f"SELECT mean(lux) FROM streetlight {where} GROUP BY {I}",
                               unit="lux"))
            .with_panel(series(t("Power drawn per community (W)"),
                               f"SELECT sum(power_w) FROM (SELECT mean(power_w) AS power_w "
                               f"FROM streetlight {where} GROUP BY {I}, device, community) "
                               f"GROUP BY time($__interval), community", unit="watt"))
            .with_panel(gauge_bars(t("Energy used in the range per community (kWh)"),
                                   f"SELECT sum(used) FROM (SELECT spread(energy_kwh) AS used "
                                   f"FROM streetlight {where} GROUP BY device, community) "
                                   "GROUP BY community", unit="kwatth"))
            .with_panel(gauge_bars(t("Energy saved by dimming (share of rated)"),
                                   f"SELECT 1 - mean(dim_pct) / 100 FROM streetlight {where} "
                                   "AND dim_pct > 0 GROUP BY community", unit="percentunit"))
            .with_panel(grid(t("Lamp faults and lamp alerts"),
                             f"SELECT code FROM {schema.EVENT} WHERE {T} AND kind = "
                             f"'streetlight' AND {DEVICE_FILTER}",
                             f"SELECT rule, state, message FROM {schema.ALERT} WHERE {T} AND "
                             f"kind = 'streetlight' AND {DEVICE_FILTER}")))


def waste(t: Texts) -> Any:
    b = variables(t, board("sct-waste", t("Waste sorting: bins"), ["waste"]), "waste_bin")
    where = f"WHERE {T} AND {DEVICE_FILTER}"
    fill = series(t("Fill level by category (mean %)"), f"SELECT mean(fill_pct) FROM "
                  f"waste_bin {where} GROUP BY {I}, category", unit="percent", w=24,
                  alias="$tag_category")
    return (b.with_panel(shown_as(fill, t.values(schema.KIND_TAG_VALUES["category"])))
            .with_panel(grid(t("Bins near overflow, with the forecast time to full"),
                             f"SELECT message, state FROM {schema.ALERT} WHERE {T} AND "
                             f"rule = 'bin_full' AND {DEVICE_FILTER}", w=12))
            .with_panel(series(t("Collections (bins emptied)"),
                               f"SELECT count(n) FROM {schema.EVENT} WHERE {T} AND type = "
                               f"'emptied' AND {DEVICE_FILTER} GROUP BY time(1h), community")))


def water(t: Texts) -> Any:
    b = variables(t, board("sct-water", t("Water: supply, leaks, quality, rain tanks"), ["water"]),
                  "water_meter")
    where = f"WHERE {T} AND {FILTER}"
    inlet = f"FROM water_meter {where} AND role = 'inlet'"
    return (b.with_panel(series(t("Inlet flow (m³/h)"), f"SELECT mean(flow_m3h) {inlet} "
                                f"GROUP BY {I}, community", unit="m3"))
            .with_panel(series(t("Night-time minimum flow by day (m³/h) — rising means a leak"),
                               f"SELECT min(flow_m3h) {inlet} GROUP BY time(1d), community",
                               unit="m3"))
            .with_panel(series(t("Pressure (kPa)"), f"SELECT mean(pressure_kpa) FROM water_meter "
                               f"WHERE {T} AND {DEVICE_FILTER} GROUP BY {I}, community",
                               unit="kpa"))
            .with_panel(shown_as(series(t("Quality: turbidity (NTU, norm ≤ 1), free "
                                          "chlorine (mg/L, ≥ 0.05), pH (6.5-8.5)"),
                               f"SELECT mean(turbidity_ntu) AS turbidity, mean(chlorine_mg_l) "
                               f"AS chlorine, mean(ph) AS ph FROM water_quality {where} "
                               f"GROUP BY {I}"),
                        {"turbidity": t("turbidity"), "chlorine": t("chlorine")}))
            .with_panel(series(t("Rain tanks and drainage wells (level %)"),
                               f"SELECT mean(level_pct) FROM water_level {where} "
                               f"GROUP BY {I}, device", unit="percent", w=24)))


def security(t: Texts) -> Any:
    b = variables(t, board("sct-security", t("Security"), ["security"]), "door")
    ev = f"FROM {schema.EVENT} WHERE {T} AND {FILTER}"
    access = series(t("Door access by result"), f"SELECT count(n) FROM {schema.EVENT} WHERE "
                    f"{T} AND {DEVICE_FILTER} AND type = 'access' GROUP BY time(1h), result",
                    alias="$tag_result")
    return (b.with_panel(shown_as(access, t.values(["granted", "denied"])))
            .with_panel(series(t("Doors forced or held open, alarms"),
                               f"SELECT count(n) {ev} AND (type = 'forced' OR type = "
                               f"'held_open' OR type = 'alarm' OR type = 'intrusion') "
                               "GROUP BY time(1h), type"))
            .with_panel(gauge_bars(t("Cameras recording (share of readings)"),
                                   f"SELECT mean(rec) FROM (SELECT last(storage_pct) * 0 + 1 "
                                   f"AS rec FROM camera WHERE {T} AND {FILTER} AND recording "
                                   "= true GROUP BY device, community) GROUP BY community",
                                   unit="short", w=24)))


def alerts(t: Texts) -> Any:
    b = variables(t, board("sct-alerts", t("Alerts"), ["alerts"]))
    where = f"WHERE {T} AND {FILTER}"
    return (b.with_panel(series(t("Alerts raised by rule"),
                                f"SELECT count(state) FROM {schema.ALERT} {where} AND state = "
                                f"'raised' GROUP BY time(1h), rule", w=24))
            .with_panel(grid(t("Alerts, raised and cleared"),
                             f"SELECT device, kind, rule, severity, state, message FROM "
                             f"{schema.ALERT} {where} ORDER BY time DESC LIMIT 500")))


def health(t: Texts) -> Any:
    b = board("sct-collector", t("Collector health"), ["collector"])
    rate = "non_negative_derivative(last({0}), 1s) AS {0}"
    return (b.with_panel(series(t("Messages received, lines written, rejected (per second)"),
                                f"SELECT {rate.format('received')}, {rate.format('written')}, "
                                f"{rate.format('rejected')} FROM {C} WHERE {T} GROUP BY {I}, "
                                "instance", unit="reqps", w=12))
            # Cluster mode: several collectors, one instance tag each; summed here.
            .with_panel(series(t("All collectors: messages received (per second)"),
                               f"SELECT sum(received) AS received FROM (SELECT "
                               f"{rate.format('received')} FROM {C} WHERE {T} GROUP BY {I}, "
                               f"instance) WHERE {T} GROUP BY {I}", unit="reqps", w=12))
            .with_panel(series(t("Rejected by reason (total)"),
                               f"SELECT last(/^rejected_/) FROM {C} WHERE {T} GROUP BY {I}, "
                               "instance"))
            .with_panel(series(t("Spool backlog (lines), unacknowledged messages, partitions "
                               "active (cluster mode)"),
                               f"SELECT last(spool_lines) AS spool, last(unacknowledged) AS "
                               f"unacknowledged, last(pending) AS pending, "
                               f"last(partitions_active) AS partitions FROM {C} WHERE {T} "
                               f"GROUP BY {I}, instance"))
            .with_panel(single(t("Seconds since the last write"),
                               f"SELECT last(seconds_since_write) FROM {C} WHERE {T}", unit="s"))
            .with_panel(grid(t("Collector alerts"),
                             f"SELECT rule, severity, state, message FROM {schema.ALERT} WHERE "
                             f"{T} AND kind = 'collector'", w=18)))


def goal(t: Texts, target_share: float, target_year: int, plan: dict[int, str]) -> Any:
    """The programme's goal: each city's milestones (``plan``: year -> "count" or
    "share"; the one of ``target_year`` in force), and every community's indicators by the
    plan's areas, with the ones still being assessed (not enough data) apart."""
    b = variables(t, board("sct-green-goal", t("Green-community goal"), ["goal", "kpi"]))

    def total(field: str) -> str:   # summed over the cities chosen: all = the province
        return (f"SELECT sum({field}) FROM (SELECT last({field}) AS {field} {CITIES} "
                "GROUP BY city)")

    return (b.with_panel(single(t("Communities meeting every indicator"), total("meeting")))
            .with_panel(single(t("Communities being assessed (not enough data)"),
                               total("assessing")))
            .with_panel(single(t("Communities failing"), total("failing")))
            .with_panel(single(t("Share of urban communities meeting"),
                               f"SELECT sum(meeting) / sum(communities) FROM (SELECT "
                               f"last(meeting) AS meeting, last(communities) AS communities "
                               f"{CITIES} GROUP BY city)", unit="percentunit"))
            .with_panel(_city_bars(t, target_share, target_year))
            .with_panel(_milestones(t, target_year, plan))
            .with_panel(_indicators(t)).with_panel(_enough(t)))


#: city_kpi of the cities chosen, without the province's total.
CITIES = f"FROM {schema.CITY_KPI} WHERE {T} AND city =~ /^$city$/ AND city != '{schema.PROVINCE}'"
#: community_kpi of the cities and communities chosen.
KPI = f"FROM {schema.COMMUNITY_KPI} WHERE {T} AND {FILTER}"
#: The indicators in the order of the plan's areas.
INDICATORS = [n for _, names in labels.by_area() for n in names]


def _city_bars(t: Texts, target_share: float, target_year: int) -> Any:
    """Each city's share against the year in force's target, or its count when that year
    sets a count."""
    if target_share > 0:
        bars = gauge_bars(t("City share meeting the goal") + f" — {target_share:.0%} "
                          f"({target_year})", f"SELECT last(share) {CITIES} GROUP BY city",
                          unit="percentunit", threshold=target_share, alias="$tag_city")
    else:
        bars = gauge_bars(t("Green communities per city") + f" ({target_year})",
                          f"SELECT last(meeting) {CITIES} GROUP BY city", unit="short",
                          alias="$tag_city")
    return shown_as(bars, city_names(t))


def _milestones(t: Texts, target_year: int, plan: dict[int, str]) -> Any:
    """A row a city chosen and the province's total (its last row): counts, share, and
    each milestone met or not."""
    years = [f"last(ok_{y}) AS ok_{y}" for y in sorted(plan)]
    query = (f"SELECT last(meeting) AS meeting, last(assessing) AS assessing, last(failing) "
             f"AS failing, last(communities) AS communities, last(share) AS share, "
             f"{', '.join(years)} FROM {schema.CITY_KPI} WHERE {T} AND (city =~ /^$city$/ "
             f"OR city = '{schema.PROVINCE}') GROUP BY city")
    table = values_shown_as(grid(t("Milestones per city (* the one in force)"), query, h=10),
                            "city", city_names(t))
    for y in plan:
        table = values_shown_as(table, f"ok_{y}", {"true": t("on track"),
                                                   "false": t("behind")})
    return shown_as(table, {
        "city": t("City"), "meeting": t("meeting"), "assessing": t("assessing"),
        "failing": t("failing"), "communities": t("urban communities"),
        "share": t("share meeting"),
        **{f"ok_{y}": ("*" if y == target_year else "") + f"{y} {t(plan[y])}" for y in plan}})


def _areas(t: Texts) -> dict[str, str]:
    """Each indicator's column as "area · requirement: indicator"."""
    return {n: f"{labels.area_of(n).name(t.language)} · {labels.indicator(n, t.language)}"
            for n in INDICATORS}


def _indicators(t: Texts) -> Any:
    # Quoted: "name" is an InfluxQL keyword.
    last = ", ".join(f'last("{n}") AS "{n}"' for n in (schema.KPI_NAME, schema.KPI_ASSESSING,
                                                       schema.KPI_MEETS, *INDICATORS))
    table = grid(t("Per community: indicators by the plan's areas"),
                 f"SELECT {last} {KPI} GROUP BY community, city", h=12)
    table = values_shown_as(table, "city", city_names(t))
    table = values_shown_as(table, schema.KPI_ASSESSING, {"true": t("assessing"), "false": ""})
    table = values_shown_as(table, schema.KPI_MEETS, {"1": t("meets"), "0": ""})
    return shown_as(table, {**_areas(t), "city": t("City"), "community": t("Community"),
                            schema.KPI_NAME: t("name"), schema.KPI_ASSESSING: t("assessing"),
                            schema.KPI_MEETS: t("meets")})


def _enough(t: Texts) -> Any:
    """Per community and indicator: enough data for a verdict, or 数据不足."""
    enough = ", ".join(f"last({n}_enough) AS {n}" for n in INDICATORS)
    table = values_shown_as(grid(t("Data enough for a verdict"),
                                 f"SELECT {enough} {KPI} GROUP BY community, city", h=10),
                            "city", city_names(t))
    for n in INDICATORS:
        table = values_shown_as(table, n, {"true": "✓", "false": t("not enough data")})
    return shown_as(table, {**_areas(t), "city": t("City"), "community": t("Community")})


#: The plan's milestones by default: 2020 a count, 2021 and 2022 shares.
PLAN = {2020: "count", 2021: "share", 2022: "share"}


def all_boards(target_share: float = 0.6, target_year: int = 2022, language: Language = "zh",
               plan: dict[int, str] | None = None) -> dict[str, Any]:
    """file name -> dashboard builder, with every text in ``language``."""
    t = Texts(language)
    return {"overview.json": overview(t), "lighting.json": lighting(t), "waste.json": waste(t),
            "water.json": water(t), "security.json": security(t), "alerts.json": alerts(t),
            "collector.json": health(t),
            "green-goal.json": goal(t, target_share, target_year, plan or PLAN)}
