"""``sct report --out DIR``: the goal board and the key charts as PNG files and one HTML page,
for people without Grafana.

Nothing here has queries of its own: every figure comes from a panel of the generated
dashboards (found by board and title), with Grafana's macros filled in the way Grafana would
for the chosen range and "All" in every variable. So the report and the dashboards cannot
disagree about what a number means.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")   # no screen here, and none needed: files only
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib import font_manager

from dashboards import reportpage
from dashboards.boards import PLAN
from dashboards.texts import Texts
from devices import labels, schema
from devices.labels import Language

Series = list[dict[str, Any]]
Query = Callable[[str], Awaitable[list[Series]]]

GOAL = "green-goal.json"
#: The charts' clock: the communities' own (China Standard Time, no daylight saving).
CHINA = timezone(timedelta(hours=8))
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
    language: Language = "zh"
    plan: dict[int, str] = field(default_factory=dict)
    meeting: int = 0
    assessing: int = 0
    failing: int = 0
    share: float = 0.0
    #: rows of the board's "Milestones per city" (city id, counts, share, ok_<year>),
    #: the province's last
    cities: list[dict[str, Any]] = field(default_factory=list)
    #: rows of "Per community", each with ``enough``: indicator -> data enough for a verdict
    communities: list[dict[str, Any]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


def _rows(series: Series) -> list[dict[str, Any]]:
    """A table panel's rows: its tags and the columns of its first row."""
    return [{**s.get("tags", {}), **dict(zip(s["columns"], s["values"][0], strict=True))}
            for s in series]


async def gather(query: Query, boards: Mapping[str, str], range_label: str, range_s: int,
                 target_share: float, target_year: int, language: Language = "zh",
                 plan: Mapping[int, str] | None = None) -> Report:
    """Run the panels' queries over the last ``range_s`` seconds (``range_label`` as the
    user said it); the figures of the report. ``boards`` are the English ones: the
    queries are the same in every language and the titles are found in English."""

    async def panel(board: str, title: str) -> tuple[str, Series]:
        full, queries = panel_queries(boards, board, title)
        series: Series = []
        for q in queries:
            series += (await query(fill(q, range_s)))[0]
        return full, series

    report = Report(range_label, datetime.now(UTC), target_share, target_year, language,
                    dict(plan or PLAN))
    for name, title in (("meeting", "Communities meeting every indicator"),
                        ("assessing", "Communities being assessed"),
                        ("failing", "Communities failing")):
        setattr(report, name, int(_first_value((await panel(GOAL, title))[1])))
    report.share = _first_value((await panel(GOAL, "Share of urban communities"))[1])
    rows = _rows((await panel(GOAL, "Milestones per city"))[1])
    report.cities = sorted(rows, key=lambda r: (r["city"] == schema.PROVINCE, _city_order(r)))
    enough = {r["community"]: r for r in _rows((await panel(GOAL, "Data enough"))[1])}
    for row in _rows((await panel(GOAL, "Per community"))[1]):
        flags = enough.get(row["community"], {})
        row["enough"] = {n: flags.get(n) is not False for n in schema.KPI_INDICATORS}
        report.communities.append(row)
    report.communities.sort(key=lambda r: (_city_order(r), r["community"]))
    t = Texts(language)
    for board, title, png in KEY_CHARTS:
        full, series = await panel(board, title)
        report.charts.append(Chart(t(full), png, series[:MAX_LINES],
                                   max(0, len(series) - MAX_LINES)))
    return report


def _city_order(row: Mapping[str, Any]) -> int:
    return CITY_ORDER.get(row["city"], len(CITY_ORDER))


#: The province's order of its cities.
CITY_ORDER = {c.id: i for i, c in enumerate(labels.CITIES)}


def _first_value(series: Series) -> float:
    """The first value of the first series; 0 when there is none."""
    return float(series[0]["values"][0][1] or 0.0) if series else 0.0


def write(report: Report, out: Path,
          passes: Callable[[str, float], bool]) -> list[Path]:
    """The PNG files and ``index.html`` in ``out``; ``passes(indicator, value)`` marks each
    cell of the community table. Returns the files written.

    Raises:
        FontMissing: the report is in Chinese and no CJK font is installed (the charts'
            text would be boxes).
    """
    if report.language == "zh":
        use_cjk_font()
    out.mkdir(parents=True, exist_ok=True)
    files = [_city_share_png(report, out / "city-shares.png")]
    files += [_series_png(chart, out / chart.png, report.language, _legend_names(report))
              for chart in report.charts]
    page = out / "index.html"
    page.write_text(reportpage.html_page(report, passes), encoding="utf-8")
    return [*files, page]


class FontMissing(RuntimeError):
    """Raised when a Chinese report is asked for and no CJK font is installed."""


#: Where Debian's fonts-noto-cjk puts the sans-serif face.
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Medium.ttc")


def use_cjk_font() -> str:
    """Make matplotlib draw Chinese with Noto Sans CJK (Latin text too, so one face is
    used throughout); its family name."""
    for path in CJK_FONTS:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            family = font_manager.FontProperties(fname=path).get_name()
            plt.rcParams["font.family"] = [family, "DejaVu Sans"]
            return family
    raise FontMissing("no CJK font for the Chinese charts: install Debian's fonts-noto-cjk "
                      "(make demo does), or set ui.language = \"en\"")


def _city_share_png(report: Report, path: Path) -> Path:
    t = Texts(report.language)
    rows = [r for r in report.cities if r["city"] != schema.PROVINCE]
    names = [labels.city_name(r["city"], report.language) for r in rows]
    shares = [float(r.get("share") or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.4))
    target = report.target_share
    colours = ["#2e7d32" if target and s >= target else "#c62828" for s in shares]
    ax.barh(names, shares, color=colours)
    if target:
        ax.axvline(target, color="black", linestyle="--",
                   label=f"{report.target_year}: {target:.0%}")
        ax.legend(loc="lower right")
    for y, share in enumerate(shares):
        ax.text(min(share, 0.93) + 0.01, y, f"{share:.0%}", va="center")
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.invert_yaxis()
    ax.set_title(t("City share meeting the goal"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _legend_names(report: Report) -> dict[str, str]:
    """Tag values as a legend shows them: communities and cities by name, waste categories
    and access results in the report's language."""
    t = Texts(report.language)
    return {**t.values(list(labels.VALUES)),
            **{c.id: c.name(report.language) for c in labels.CITIES},
            **{r["community"]: str(r.get(schema.KPI_NAME) or r["community"])
               for r in report.communities}}


def _series_png(chart: Chart, path: Path, language: Language, names: dict[str, str]) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4))
    for s in chart.series:
        label = ", ".join(names.get(str(v), str(v)) for v in s.get("tags", {}).values()) \
            or s["name"]
        times = np.array([row[0] for row in s["values"]], dtype="datetime64[ms]")
        for col, name in enumerate(s["columns"][1:], start=1):
            values = [row[col] if row[col] is not None else float("nan") for row in s["values"]]
            ax.plot(times, values, label=label if len(s["columns"]) == 2 else
                    f"{label} {name}".strip(), linewidth=1.2)
    ax.xaxis.set_major_formatter(
        mdates.DateFormatter("%m-%d %H:%M", tz=CHINA))  # type: ignore[no-untyped-call]
    more = {"zh": f"（另有 {chart.left_out} 条未画出）",
            "en": f" ({chart.left_out} more series not drawn)"}[language]
    ax.set_title(chart.title + (more if chart.left_out else ""), fontsize=10)
    ax.set_xlabel({"zh": "北京时间", "en": "China time (UTC+8)"}[language], fontsize=8)
    if chart.series:
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    else:
        ax.text(0.5, 0.5, reportpage.NO_DATA[language], ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
