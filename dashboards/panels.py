"""Panel helpers: InfluxQL targets on the provisioned datasource, and the panel kinds we use.

The foundation SDK has no InfluxDB query type, so :class:`InfluxQL` supplies one (raw
InfluxQL, which works on InfluxDB 1.x, 2.x through its v1 layer, and 3.x). Queries use
Grafana's ``$timeFilter`` and ``$__interval`` and the dashboard variables ``$city``,
``$community`` and ``$device``; :func:`FILTER` is the tag filter for them.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import DATASOURCE_UID
from dashboards.texts import Texts
from devices import labels, schema

DATASOURCE = dm.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
FILTER = 'city =~ /^$city$/ AND community =~ /^$community$/'
#: FILTER and the device variable, for panels on the measurement the variable comes from.
DEVICE_FILTER = FILTER + ' AND device =~ /^$device$/'


class _InfluxQLQuery(variants.Dataquery):
    def __init__(self, query: str, ref: str, fmt: str, alias: str) -> None:
        self.query, self.ref, self.fmt, self.alias = query, ref, fmt, alias

    def to_json(self) -> dict[str, Any]:
        out = {"refId": self.ref, "query": self.query, "rawQuery": True,
               "resultFormat": self.fmt,
               "datasource": {"type": "influxdb", "uid": DATASOURCE_UID}}
        if self.alias:
            out["alias"] = self.alias
        return out


class InfluxQL(cogbuilder.Builder[variants.Dataquery]):
    """A raw InfluxQL target."""

    def __init__(self, query: str, ref: str = "A", fmt: str = "time_series",
                 alias: str = "") -> None:
        self._query = _InfluxQLQuery(query, ref, fmt, alias)

    def build(self) -> variants.Dataquery:
        return self._query


def _targets(panel: Any, queries: tuple[str, ...], fmt: str, alias: str = "") -> Any:
    for i, query in enumerate(queries):
        panel = panel.with_target(InfluxQL(query, chr(ord("A") + i), fmt, alias))
    return panel.datasource(DATASOURCE)


def series(title: str, *queries: str, unit: str = "", w: int = 12, h: int = 8,
           alias: str = "") -> Any:
    panel = timeseries.Panel().title(title).span(w).height(h)
    if unit:
        panel = panel.unit(unit)
    return _targets(panel, queries, "time_series", alias)


def single(title: str, *queries: str, unit: str = "", w: int = 6, h: int = 5) -> Any:
    panel = stat.Panel().title(title).span(w).height(h)
    if unit:
        panel = panel.unit(unit)
    return _targets(panel, queries, "time_series")


def gauge_bars(title: str, *queries: str, unit: str = "", w: int = 12, h: int = 8,
               threshold: float | None = None, alias: str = "") -> Any:
    """Bars, one a series; ``alias`` names them (``$tag_city``: by the city id, which
    :func:`shown_as` can then show as the city's name)."""
    panel = bargauge.Panel().title(title).span(w).height(h)
    if unit:
        panel = panel.unit(unit)
    if threshold is not None:
        panel = panel.thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
            dm.Threshold(value=None, color="red"), dm.Threshold(value=threshold, color="green")]))
    return _targets(panel, queries, "time_series", alias)


def grid(title: str, *queries: str, w: int = 24, h: int = 9) -> Any:
    return _targets(table.Panel().title(title).span(w).height(h), queries, "table")


def device_map(title: str, query: str, w: int = 24, h: int = 12) -> Any:
    """A geomap of markers placed by the ``lat``/``lon`` columns of a table query and
    coloured by its ``online`` column (green online, red offline)."""
    layer = (cb.MapLayerOptions().type("markers").name("Devices").tooltip(True)
             .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                       .latitude("lat").longitude("lon"))
             .config({"showLegend": True, "style": {"size": {"fixed": 5},
                                                    "color": {"field": "online"}}}))
    online = dm.DynamicConfigValue(id_val="mappings", value=[{
        "type": "value", "options": {
            "true": {"text": "online", "color": "green", "index": 0},
            "false": {"text": "offline", "color": "red", "index": 1}}}])
    panel = (geomap.Panel().title(title).span(w).height(h)
             # The view over Hebei; Grafana's geomap takes whole degrees here.
             .view(geomap.MapViewConfig().id("coords").lat(39).lon(116).zoom(6))
             .layers([layer]).override_by_name("online", [online])
             # InfluxQL answers one frame per device; the map wants one table.
             .with_transformation(dm.DataTransformerConfig(id_val="merge", options={})))
    return _targets(panel, (query,), "table")


def variables(t: Texts, board: Any, device_from: str | None = None) -> Any:
    """The city, community (and device) variables. Each shows a name and filters on the id:
    the city from the province's city table (a custom variable, ``text : value``); the
    community from ``community_info`` (written from the registry by every KPI run), whose
    ``label`` tag ``槐中路社区 (sjz-yuhua-001)`` is split by the variable's regex into the
    text shown and the id in the brackets (Grafana 7.4+ named groups), so the list still
    follows the city chosen; the device by its id."""
    cities = ", ".join(f"{c.name(t.language)} : {c.id}" for c in labels.CITIES)
    board = board.with_variable(
        db.CustomVariable("city").label(t("City")).values(cities).include_all(True)
        .all_value(".*").multi(False))
    board = board.with_variable(
        _variable("community", f'SHOW TAG VALUES FROM "{schema.COMMUNITY_INFO}" WITH KEY = '
                  f'"{schema.LABEL}" WHERE city =~ /^$city$/', t("Community"))
        .regex(COMMUNITY_REGEX))
    if device_from:
        board = board.with_variable(_variable(
            "device", f'SHOW TAG VALUES FROM "{device_from}" WITH KEY = "device" '
                      "WHERE community =~ /^$community$/", t("Device")))
    return board


#: Splits a ``community_info`` label into the name shown and the id filtered on.
COMMUNITY_REGEX = r"/^(?<text>.*\((?<value>[^()]+)\))$/"


def _variable(name: str, query: str, label: str) -> Any:
    return (db.QueryVariable(name).label(label).query(query)
            .datasource(DATASOURCE).include_all(True).all_value(".*").multi(False)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED))


def shown_as(panel: Any, names: dict[str, str]) -> Any:
    """Series or columns shown under other names (a legend in Chinese, a city's name for
    its id) without touching the query: Grafana's display-name overrides."""
    for name, shown in names.items():
        panel = panel.override_by_name(name, [dm.DynamicConfigValue(id_val="displayName",
                                                                    value=shown)])
    return panel


def values_shown_as(panel: Any, column: str, names: dict[str, str]) -> Any:
    """A column's values shown as words (a city id as its name, true as "达到")."""
    options = {value: {"text": text, "index": i} for i, (value, text) in
               enumerate(names.items())}
    return panel.override_by_name(column, [dm.DynamicConfigValue(
        id_val="mappings", value=[{"type": "value", "options": options}])])


def city_names(t: Texts) -> dict[str, str]:
    return {**{c.id: c.name(t.language) for c in labels.CITIES},
            schema.PROVINCE: labels.word("province", t.language)}


def board(uid: str, title: str, tags: list[str]) -> Any:
    return (db.Dashboard(title).uid(uid).tags(["sct", *tags]).refresh("30s")
            .time("now-2d", "now").timezone("browser"))
