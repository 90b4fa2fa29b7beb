"""The report's HTML page: the goal in figures, each city's milestones with the province's
total, every community's indicators under the plan's areas (a cell without the data for a
verdict says so), and the key charts. In the report's language; ids stay in their own
column so a city team can find a community in the registry.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dashboards.texts import Texts
from devices import labels, schema
from devices.labels import Language, word

if TYPE_CHECKING:
    from dashboards.report import Report

NO_DATA = {"zh": "此时段内无数据", "en": "no data in this range"}
e = html.escape

PAGE = {
    "zh": {"title": "智慧社区：绿色社区创建目标", "lang": "zh-CN",
           "generated": "生成于 {at} UTC，数据来自 InfluxDB，最近 {range}，全部城市和社区；"
                        "与 Grafana 仪表盘使用相同的查询。",
           "summary": "{meeting} 个社区全部指标达标，{assessing} 个评估中（数据不足），"
                      "{failing} 个未达标；达标社区占城镇社区 {share}",
           "milestones": "各市阶段目标",
           "plan": "2020 年：每个设区市（含所辖区、县级市）至少 5 个绿色社区，定州、辛集至少 2 个；"
                   "2021 年：城镇社区的 30%；2022 年：60%。* 为现行目标（{year} 年）。"
                   "占比的分母为各市城镇社区总数（配置项 kpi.city_communities）。",
           "communities": "各社区指标（按创建内容分类）",
           "cells": "红色：未达到阈值；灰色“数据不足”：数据尚不足以评定（例如路灯节能和漏损需要"
                    "完整的一夜），该社区为“评估中”，不计入达标。",
           "charts": "主要图表", "status": "结论", "id": "编号"},
    "en": {"title": "Smart communities: green-community goal", "lang": "en",
           "generated": "Generated {at} UTC from InfluxDB, last {range}, every city and "
                        "community. The same queries as the Grafana dashboards.",
           "summary": "{meeting} communities meet every indicator, {assessing} are being "
                      "assessed (not enough data), {failing} fail; {share} of the urban "
                      "communities meet",
           "milestones": "Milestones per city",
           "plan": "2020: at least 5 green communities in each city with districts (2 in "
                   "Dingzhou and Xinji); 2021: 30 % of its urban communities; 2022: 60 %. "
                   "* marks the one in force ({year}). A share's denominator is the city's "
                   "urban communities (kpi.city_communities).",
           "communities": "Indicators per community, by the plan's areas",
           "cells": "Red: below its threshold; grey \"not enough data\": too little data for "
                    "a verdict yet (lighting savings and leaks need a whole night); such a "
                    "community is \"assessing\" and does not count as meeting.",
           "charts": "Key charts", "status": "verdict", "id": "id"},
}

STYLE = """
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { text-align: center; }
td.name { text-align: left; white-space: nowrap; }
td.verdict { white-space: nowrap; }
.ok { background: #e8f5e9; } .fail { background: #ffebee; } .none { color: #888; }
.wait { background: #f3f3f3; color: #666; }
img { max-width: 100%; }
"""

#: Tells a browser (and the screenshot test) whether every chart loaded.
CHECK = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0);
  document.body.dataset.images = broken.length ? "broken: " +
    broken.map(i => i.getAttribute("src")).join(" ") : "ok";
});
</script>"""


def html_page(report: Report, passes: Callable[[str, float], bool]) -> str:
    lang: Language = report.language
    words, t = PAGE[lang], Texts(lang)
    summary = words["summary"].format(meeting=report.meeting, assessing=report.assessing,
                                      failing=report.failing, share=f"{report.share:.0%}")
    charts = "".join(f'<h3>{e(c.title)}</h3><img src="{e(c.png)}" alt="{e(c.title)}">'
                     + ("" if c.series else f"<p class=none>{NO_DATA[lang]}</p>")
                     for c in report.charts)
    generated = words["generated"].format(at=f"{report.generated:%Y-%m-%d %H:%M}",
                                          range=e(report.range_label))
    return f"""<!doctype html>
<html lang="{words['lang']}"><head><meta charset="utf-8"><title>{e(words['title'])}</title>
<style>{STYLE}</style></head><body>
<h1>{e(words['title'])}</h1>
<p>{generated}</p>
<h2>{e(summary)}</h2>
<img src="city-shares.png" alt="{e(t('City share meeting the goal'))}">
<h2>{e(words['milestones'])}</h2>
<p>{e(words['plan'].format(year=report.target_year))}</p>
{_milestones(report, t)}
<h2>{e(words['communities'])}</h2>
<p>{e(words['cells'])}</p>
{_communities(report, passes, words['status'], words['id'])}
<h2>{e(words['charts'])}</h2>
{charts}
{CHECK}
</body></html>
"""


def _milestones(report: Report, t: Texts) -> str:
    lang = report.language
    years = sorted(report.plan)
    head = "".join(f"<th>{t(h)}</th>" for h in ("meeting", "assessing", "failing",
                                                 "urban communities", "share meeting"))
    head += "".join(f"<th>{'*' if y == report.target_year else ''}{y} {t(report.plan[y])}"
                    "</th>" for y in years)
    rows = []
    for r in report.cities:
        name = (word("province", lang) if r["city"] == schema.PROVINCE
                else labels.city_name(r["city"], lang))
        cells = "".join(f"<td>{int(r.get(k) or 0)}</td>"
                        for k in ("meeting", "assessing", "failing", "communities"))
        cells += f"<td>{float(r.get('share') or 0):.0%}</td>"
        for y in years:
            ok = r.get(f"ok_{y}")
            cells += ("<td class=none>–</td>" if ok is None else
                      f"<td class={'ok' if ok else 'fail'}>{t('on track' if ok else 'behind')}"
                      "</td>")
        rows.append(f"<tr><td class=name>{e(name)}</td>{cells}</tr>")
    return (f"<table id=milestones><tr><th>{t('City')}</th>{head}</tr>{''.join(rows)}"
            "</table>")


def _communities(report: Report, passes: Callable[[str, float], bool], status: str,
                 id_head: str) -> str:
    lang = report.language
    groups = labels.by_area()
    areas = "".join(f"<th colspan={len(names)}>{e(a.name(lang))}</th>" for a, names in groups)
    heads = "".join(f"<th title='{e(labels.indicator(n, lang))}'>"
                    f"{e(labels.indicator(n, lang))}</th>" for _, names in groups for n in names)
    rows = []
    for r in report.communities:
        cells = "".join(_cell(r, n, passes, lang) for _, names in groups for n in names)
        verdict = ("meets" if r.get(schema.KPI_MEETS) == 1 else
                   "assessing" if r.get(schema.KPI_ASSESSING) else "fails")
        css = {"meets": "ok", "assessing": "wait", "fails": "fail"}[verdict]
        rows.append(f"<tr><td class=name>{e(labels.city_name(r['city'], lang))}</td>"
                    f"<td class=name>{e(str(r.get(schema.KPI_NAME) or r['community']))}</td>"
                    f"<td class=name>{e(r['community'])}</td>{cells}"
                    f"<td class='verdict {css}'>{e(word(verdict, lang))}</td></tr>")
    return (f"<table id=communities><tr><th rowspan=2>{word('city', lang)}</th>"
            f"<th rowspan=2>{word('community', lang)}</th><th rowspan=2>{id_head}</th>"
            f"{areas}<th rowspan=2>{status}</th></tr><tr>{heads}</tr>{''.join(rows)}</table>")


def _cell(row: dict[str, Any], name: str, passes: Callable[[str, float], bool],
          lang: Language) -> str:
    value = row.get(name)
    if value is None:
        return "<td class=none>–</td>"
    if not row["enough"].get(name, True):
        return f"<td class=wait>{word('not_enough_data', lang)}</td>"
    return f"<td class={'ok' if passes(name, float(value)) else 'fail'}>{value:.2f}</td>"
