"""``sct report --out DIR``: the goal board and the key charts as PNG files and one HTML page,
for people without Grafana.

Nothing here has queries of its own: every figure comes from a panel of the generated
dashboards (found by board and title), with Grafana's macros filled in the way Grafana would
for the chosen range and "All" in every variable. So the report and the dashboards cannot
disagree about what a number means.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")   # no screen here, and none needed: files only
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from devices import schema

Series = list[dict[str, Any]]
Query = Callable[[str], Awaitable[list[Series]]]

GOAL = "green-goal.json"
#: (board file, start of the panel's title, PNG file name): the charts besides the goal.
KEY_CHARTS = (
    ("lighting.json", "Power drawn per community", "lamp-power.png"),
    ("waste.json", "Fill level by category", "bin-fill.png"),
    ("water.json", "Inlet flow", "inlet-flow.png"),
    ("water.json", "Night-time minimum flow", "night-flow.png"),
    ("security.json", "Door access by result", "door-access.png"),
    ("alerts.json", "Alerts raised by rule", "alerts-by-rule.png"),
)
#: Grafana aims at about this many points across a panel; $__interval follows from it.
POINTS_ACROSS = 300
MAX_LINES = 12   # a legend of more is unreadable; the report says how many were left out

def fill(query: str, range_s: int) -> str:
    """A panel's query as Grafana would send it for the last ``range_s`` seconds, every
    variable on "All"."""
    interval = max(60, range_s // POINTS_ACROSS)
    for macro, value in (("$timeFilter", f"time > now() - {range_s}s"),
                         ("$__interval", f"{interval}s"), ("$city", ".*"),
                         ("$community", ".*"), ("$device", ".*")):
        query = query.replace(macro, value)
    return query


def panel_queries(boards: Mapping[str, str], board: str, title: str) -> tuple[str, list[str]]:
    """(full title, queries) of the first panel of ``board`` whose title starts with
    ``title``. Raises KeyError when the dashboards no longer have it."""
    for panel in json.loads(boards[board])["panels"]:
        if panel["title"].startswith(title):
            return panel["title"], [t["query"] for t in panel.get("targets", [])]
    raise KeyError(f"{board} has no panel titled {title!r}...")


@dataclass
class Chart:
    title: str
    png: str
    series: Series
    left_out: int = 0


@dataclass
class Report:
    range_label: str
    generated: datetime
    target_share: float
    target_year: int
    meeting: int = 0
    assessed: int = 0
    city_shares: dict[str, float] = field(default_factory=dict)
    communities: list[dict[str, Any]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


async def gather(query: Query, boards: Mapping[str, str], range_label: str, range_s: int,
                 target_share: float, target_year: int) -> Report:
    """Run the panels' queries over the last ``range_s`` seconds (``range_label`` as the
    user said it); the figures of the report."""

    async def panel(board: str, title: str) -> tuple[str, Series]:
        full, queries = panel_queries(boards, board, title)
        series: Series = []
        for q in queries:
            series += (await query(fill(q, range_s)))[0]
        return full, series

    report = Report(range_label, datetime.now(UTC), target_share, target_year)
    _, meeting = await panel(GOAL, "Communities meeting every indicator")
    _, assessed = await panel(GOAL, "Communities assessed")
    report.meeting = int(_first_value(meeting))
    report.assessed = int(_first_value(assessed))
    _, shares = await panel(GOAL, "City share meeting the goal")
    report.city_shares = {s["tags"]["city"]: _first_value([s]) for s in shares}
    _, rows = await panel(GOAL, "Per community")
    for s in rows:
        row = dict(zip(s["columns"], s["values"][0], strict=True))
        report.communities.append({**s["tags"], **row})
    report.communities.sort(key=lambda r: (r["city"], r["community"]))
    for board, title, png in KEY_CHARTS:
        full, series = await panel(board, title)
        report.charts.append(Chart(full, png, series[:MAX_LINES],
                                   max(0, len(series) - MAX_LINES)))
    return report


def _first_value(series: Series) -> float:
    """The first value of the first series; 0 when there is none."""
    return float(series[0]["values"][0][1] or 0.0) if series else 0.0


def write(report: Report, out: Path,
          passes: Callable[[str, float], bool]) -> list[Path]:
    """The PNG files and ``index.html`` in ``out``; ``passes(indicator, value)`` marks each
    cell of the community table. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [_city_share_png(report, out / "city-shares.png")]
    files += [_series_png(chart, out / chart.png) for chart in report.charts]
    page = out / "index.html"
    page.write_text(_html(report, passes), encoding="utf-8")
    return [*files, page]


def _city_share_png(report: Report, path: Path) -> Path:
    cities = sorted(report.city_shares)
    shares = [report.city_shares[c] for c in cities]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(cities) + 1.4))
    colours = ["#2e7d32" if s >= report.target_share else "#c62828" for s in shares]
    ax.barh(cities, shares, color=colours)
    ax.axvline(report.target_share, color="black", linestyle="--",
               label=f"target {report.target_share:.0%} by {report.target_year}")
    for y, share in enumerate(shares):
        ax.text(min(share, 0.93) + 0.01, y, f"{share:.0%}", va="center")
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.invert_yaxis()
    ax.set_title("Share of each city's communities meeting every indicator")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _series_png(chart: Chart, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4))
    for s in chart.series:
        label = ", ".join(str(v) for v in s.get("tags", {}).values()) or s["name"]
        times = np.array([row[0] for row in s["values"]], dtype="datetime64[ms]")
        for col, name in enumerate(s["columns"][1:], start=1):
            values = [row[col] if row[col] is not None else float("nan") for row in s["values"]]
            ax.plot(times, values, label=label if len(s["columns"]) == 2 else
                    f"{label} {name}".strip(), linewidth=1.2)
    ax.xaxis.set_major_formatter(
        mdates.DateFormatter("%m-%d %H:%M", tz=UTC))  # type: ignore[no-untyped-call]
    title = chart.title + (f" ({chart.left_out} more series not drawn)" if chart.left_out
                           else "")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("time (UTC)", fontsize=8)
    if chart.series:
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no data in this range", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _html(report: Report, passes: Callable[[str, float], bool]) -> str:
    e = html.escape
    names = schema.KPI_INDICATORS
    head = "".join(f"<th>{e(n.replace('_', ' '))}</th>" for n in names)
    rows = []
    for r in report.communities:
        cells = []
        for n in names:
            value = r.get(n)
            if value is None:
                cells.append("<td class=none>–</td>")
            else:
                ok = passes(n, float(value))
                cells.append(f"<td class={'ok' if ok else 'fail'}>{value:.2f}</td>")
        meets = "yes" if r.get(schema.KPI_MEETS) == 1 else "no"
        rows.append(f"<tr><td>{e(r['city'])}</td><td>{e(r['community'])}</td>{''.join(cells)}"
                    f"<td class={'ok' if meets == 'yes' else 'fail'}>{meets}</td></tr>")
    shares = "".join(
        f"<tr><td>{e(c)}</td><td class={'ok' if s >= report.target_share else 'fail'}>"
        f"{s:.0%}</td><td>{'on track' if s >= report.target_share else 'behind'}</td></tr>"
        for c, s in sorted(report.city_shares.items()))
    charts = "".join(f'<h3>{e(c.title)}</h3><img src="{e(c.png)}" alt="{e(c.title)}">'
                     + ("" if c.series else "<p class=none>no data in this range</p>")
                     for c in report.charts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sct report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
td:first-child, td:nth-child(2) {{ text-align: left; }}
.ok {{ background: #e8f5e9; }} .fail {{ background: #ffebee; }} .none {{ color: #999; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Smart communities: green-community goal</h1>
<p>Generated {report.generated:%Y-%m-%d %H:%M} UTC from InfluxDB, last {e(report.range_label)},
every city and community. The same queries as the Grafana dashboards.</p>
<h2>{report.meeting} of {report.assessed} communities meet every indicator</h2>
<p>Target: {report.target_share:.0%} of each city's communities by {report.target_year}.</p>
<img src="city-shares.png" alt="city shares against the target">
<table><tr><th>city</th><th>share meeting</th><th></th></tr>{shares}</table>
<h2>Per community</h2>
<p>Red: below its threshold (thresholds in the README, section Green-community KPIs).</p>
<table><tr><th>city</th><th>community</th>{head}<th>meets</th></tr>{''.join(rows)}</table>
<h2>Key charts</h2>
{charts}
</body></html>
"""
