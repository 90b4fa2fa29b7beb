"""The dashboards, one function each. Names of measurements and fields come from
``devices.schema``; every query is InfluxQL on the provisioned datasource.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import (
    DEVICE_FILTER,
    FILTER,
    board,
    device_map,
    gauge_bars,
    grid,
    series,
    single,
    variables,
)
from devices import schema

T = "$timeFilter"
I = "time($__interval)"  # noqa: E741 - reads like the Grafana macro it stands for
C = schema.COLLECTOR
OPEN_ALERT_LOOKBACK = "30d"


def overview() -> Any:
    b = variables(board("sct-overview", "Smart communities: overview", ["overview"]))
    online = (f"SELECT count(online) FROM (SELECT last(online) AS online FROM "
              f"{schema.DEVICE_STATUS} WHERE {T} AND {FILTER} GROUP BY device) "
              "WHERE online = true")
    # Open: the last state of each (device, rule) is "raised". Over the alerts' whole
    # retention rather than the time range, so an alert raised last week and still open counts.
    open_alerts = (f"SELECT count(state) FROM (SELECT last(state) AS state FROM {schema.ALERT} "
                   f"WHERE time > now() - {OPEN_ALERT_LOOKBACK} AND {FILTER} GROUP BY device, "
                   "rule, severity) WHERE state = 'raised' GROUP BY severity")
    return (b.with_panel(single("Devices online (last status)", online))
            .with_panel(single("Communities reporting",
                               f"SELECT count(last) FROM (SELECT last(battery_pct) FROM door "
                               f"WHERE {T} AND {FILTER} GROUP BY community)"))
            .with_panel(single("Open alerts by severity", open_alerts, w=12))
            .with_panel(series("Readings accepted per second",
                               f"SELECT non_negative_derivative(last(accepted), 1s) FROM {C} "
                               f"WHERE {T} GROUP BY {I}", unit="reqps", w=24))
            .with_panel(device_map("Devices by last status (green online, red offline)",
                                   f"SELECT last(online) AS online, last(lat) AS lat, last(lon) "
                                   f"AS lon FROM {schema.DEVICE_STATUS} WHERE {T} AND {FILTER} "
                                   "GROUP BY device, kind, community")))


def lighting() -> Any:
    b = variables(board("sct-lighting", "Streetlights", ["lighting"]), "streetlight")
    where = f"WHERE {T} AND {DEVICE_FILTER}"
    return (b.with_panel(series("Lamps dimming level (mean %)",
                                f"SELECT mean(dim_pct) FROM streetlight {where} "
                                f"GROUP BY {I}, community", unit="percent"))
            .with_panel(series("Ambient light (lx, mean) — dark below 10 lx",
                               f"SELECT mean(lux) FROM streetlight {where} GROUP BY {I}",
                               unit="lux"))
            .with_panel(series("Power drawn per community (W)",
                               f"SELECT sum(power_w) FROM (SELECT mean(power_w) AS power_w "
                               f"FROM streetlight {where} GROUP BY {I}, device, community) "
                               f"GROUP BY time($__interval), community", unit="watt"))
            .with_panel(gauge_bars("Energy used in the range per community (kWh)",
                                   f"SELECT sum(used) FROM (SELECT spread(energy_kwh) AS used "
                                   f"FROM streetlight {where} GROUP BY device, community) "
                                   "GROUP BY community", unit="kwatth"))
            .with_panel(gauge_bars("Energy saved by dimming (share of rated)",
                                   f"SELECT 1 - mean(dim_pct) / 100 FROM streetlight {where} "
                                   "AND dim_pct > 0 GROUP BY community", unit="percentunit"))
            .with_panel(grid("Lamp faults and lamp alerts",
                             f"SELECT code FROM {schema.EVENT} WHERE {T} AND kind = "
                             f"'streetlight' AND {DEVICE_FILTER}",
                             f"SELECT rule, state, message FROM {schema.ALERT} WHERE {T} AND "
                             f"kind = 'streetlight' AND {DEVICE_FILTER}")))


def waste() -> Any:
    b = variables(board("sct-waste", "Waste sorting: bins", ["waste"]), "waste_bin")
    where = f"WHERE {T} AND {DEVICE_FILTER}"
    return (b.with_panel(series("Fill level by category (mean %)",
                                f"SELECT mean(fill_pct) FROM waste_bin {where} "
                                f"GROUP BY {I}, category", unit="percent", w=24))
            .with_panel(grid("Bins near overflow, with the forecast time to full",
                             f"SELECT message, state FROM {schema.ALERT} WHERE {T} AND "
                             f"rule = 'bin_full' AND {DEVICE_FILTER}", w=12))
            .with_panel(series("Collections (bins emptied)",
                               f"SELECT count(n) FROM {schema.EVENT} WHERE {T} AND type = "
                               f"'emptied' AND {DEVICE_FILTER} GROUP BY time(1h), community")))


def water() -> Any:
    b = variables(board("sct-water", "Water: supply, leaks, quality, rain tanks", ["water"]),
                  "water_meter")
    where = f"WHERE {T} AND {FILTER}"
    inlet = f"FROM water_meter {where} AND role = 'inlet'"
    return (b.with_panel(series("Inlet flow (m³/h)", f"SELECT mean(flow_m3h) {inlet} "
                                f"GROUP BY {I}, community", unit="m3"))
            .with_panel(series("Night-time minimum flow by day (m³/h) — rising means a leak",
                               f"SELECT min(flow_m3h) {inlet} GROUP BY time(1d), community",
                               unit="m3"))
            .with_panel(series("Pressure (kPa)", f"SELECT mean(pressure_kpa) FROM water_meter "
                               f"WHERE {T} AND {DEVICE_FILTER} GROUP BY {I}, community",
                               unit="kpa"))
            .with_panel(series("Quality: turbidity (NTU, norm ≤ 1), free chlorine (mg/L, ≥ "
                               "0.05), pH (6.5-8.5)",
                               f"SELECT mean(turbidity_ntu) AS turbidity, mean(chlorine_mg_l) "
                               f"AS chlorine, mean(ph) AS ph FROM water_quality {where} "
                               f"GROUP BY {I}"))
            .with_panel(series("Rain tanks and drainage wells (level %)",
                               f"SELECT mean(level_pct) FROM water_level {where} "
                               f"GROUP BY {I}, device", unit="percent", w=24)))


def security() -> Any:
    b = variables(board("sct-security", "Security", ["security"]), "door")
    ev = f"FROM {schema.EVENT} WHERE {T} AND {FILTER}"
    return (b.with_panel(series("Door access by result",
                                f"SELECT count(n) FROM {schema.EVENT} WHERE {T} AND "
                                f"{DEVICE_FILTER} AND type = 'access' GROUP BY time(1h), "
                                "result"))
            .with_panel(series("Doors forced or held open, alarms",
                               f"SELECT count(n) {ev} AND (type = 'forced' OR type = "
                               f"'held_open' OR type = 'alarm' OR type = 'intrusion') "
                               "GROUP BY time(1h), type"))
            .with_panel(gauge_bars("Cameras recording (share of readings)",
                                   f"SELECT mean(rec) FROM (SELECT last(storage_pct) * 0 + 1 "
                                   f"AS rec FROM camera WHERE {T} AND {FILTER} AND recording "
                                   "= true GROUP BY device, community) GROUP BY community",
                                   unit="short", w=24)))


def alerts() -> Any:
    b = variables(board("sct-alerts", "Alerts", ["alerts"]))
    where = f"WHERE {T} AND {FILTER}"
    return (b.with_panel(series("Alerts raised by rule",
                                f"SELECT count(state) FROM {schema.ALERT} {where} AND state = "
                                f"'raised' GROUP BY time(1h), rule", w=24))
            .with_panel(grid("Alerts, raised and cleared",
                             f"SELECT device, kind, rule, severity, state, message FROM "
                             f"{schema.ALERT} {where} ORDER BY time DESC LIMIT 500")))


def health() -> Any:
    b = board("sct-collector", "Collector health", ["collector"])
    rate = "non_negative_derivative(last({0}), 1s) AS {0}"
    return (b.with_panel(series("Messages received, lines written, rejected (per second)",
                                f"SELECT {rate.format('received')}, {rate.format('written')}, "
                                f"{rate.format('rejected')} FROM {C} WHERE {T} GROUP BY {I}, "
                                "instance", unit="reqps", w=12))
            # Cluster mode: several collectors, one instance tag each; summed here.
            .with_panel(series("All collectors: messages received (per second)",
                               f"SELECT sum(received) AS received FROM (SELECT "
                               f"{rate.format('received')} FROM {C} WHERE {T} GROUP BY {I}, "
                               f"instance) WHERE {T} GROUP BY {I}", unit="reqps", w=12))
            .with_panel(series("Rejected by reason (total)",
                               f"SELECT last(/^rejected_/) FROM {C} WHERE {T} GROUP BY {I}, "
                               "instance"))
            .with_panel(series("Spool backlog (lines), unacknowledged messages, partitions "
                               "active (cluster mode)",
                               f"SELECT last(spool_lines) AS spool, last(unacknowledged) AS "
                               f"unacknowledged, last(pending) AS pending, "
                               f"last(partitions_active) AS partitions FROM {C} WHERE {T} "
                               f"GROUP BY {I}, instance"))
            .with_panel(single("Seconds since the last write",
                               f"SELECT last(seconds_since_write) FROM {C} WHERE {T}", unit="s"))
            .with_panel(grid("Collector alerts",
                             f"SELECT rule, severity, state, message FROM {schema.ALERT} WHERE "
                             f"{T} AND kind = 'collector'", w=18)))


def goal(target_share: float, target_year: int) -> Any:
    b = board("sct-green-goal", "Green-community goal", ["goal", "kpi"])
    b = variables(b)
    kpi = f"FROM {schema.COMMUNITY_KPI} WHERE {T} AND {FILTER}"
    last = ", ".join(f"last({name}) AS {name}"
                     for name in (*schema.KPI_INDICATORS, schema.KPI_MEETS))
    return (b.with_panel(single("Communities meeting every indicator",
                                f"SELECT sum(m) FROM (SELECT last(meets) AS m {kpi} "
                                "GROUP BY community)"))
            .with_panel(single("Communities assessed",
                               f"SELECT count(m) FROM (SELECT last(meets) AS m {kpi} "
                               "GROUP BY community)"))
            .with_panel(gauge_bars(f"City share meeting the goal — target {target_share:.0%} "
                                   f"by {target_year}",
                                   f"SELECT mean(m) FROM (SELECT last(meets) AS m {kpi} "
                                   "GROUP BY community, city) GROUP BY city",
                                   unit="percentunit", threshold=target_share))
            .with_panel(grid("Per community: indicators (meets = 1 when all pass)",
                             f"SELECT {last} {kpi} GROUP BY community, city")))


def all_boards(target_share: float = 0.6, target_year: int = 2022) -> dict[str, Any]:
    """file name -> dashboard builder."""
    return {"overview.json": overview(), "lighting.json": lighting(), "waste.json": waste(),
            "water.json": water(), "security.json": security(), "alerts.json": alerts(),
            "collector.json": health(), "green-goal.json": goal(target_share, target_year)}
