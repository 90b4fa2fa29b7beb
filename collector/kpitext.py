"""What ``sct kpi`` prints: the communities' indicators by the plan's areas, and each city's
milestones with the province's total, in the configured language (``ui.language``).

Columns are padded by display width: a Chinese character takes two cells of a terminal.
"""

from __future__ import annotations

import unicodedata

from collector.goal import CityGoal, province
from collector.kpi import CommunityKpi
from devices import labels, schema
from devices.labels import Language, word

MARK = {"meets": " ", "fails": "!", "not_enough_data": "?"}


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, cells: int, right: bool = False) -> str:
    fill = " " * max(0, cells - width(text))
    return fill + text if right else text + fill


def _community_verdict(k: CommunityKpi) -> str:
    return "meets" if k.meets else "assessing" if k.assessing else "fails"


def communities(kpis: list[CommunityKpi], language: Language) -> list[str]:
    """One line a community: its name, city, each indicator's value (``!`` below its
    threshold, ``?`` not enough data for a verdict) under the plan's areas, and its
    verdict."""
    groups = labels.by_area()
    name_w = max([width(f"{k.name} ({k.community})") for k in kpis] + [10]) + 2
    col = 9
    lead = " " * (name_w + 8)
    areas = lead + "".join(pad(area.name(language), col * len(names)) for area, names in groups)
    head = (pad(word("community", language), name_w) + pad(word("city", language), 8)
            + "".join(pad(labels.indicator(n, language, short=True), col, right=True)
                      for _, names in groups for n in names) + "  ")
    lines = [areas, head]
    for k in kpis:
        cells = "".join(pad(f"{k.values[n]:.2f}{MARK[k.verdict(n)]}", col, right=True)
                        for _, names in groups for n in names)
        lines.append(pad(f"{k.name} ({k.community})", name_w)
                     + pad(labels.city_name(k.city, language), 8) + cells + "  "
                     + word(_community_verdict(k), language))
    legend = {"zh": "!：未达到阈值；?：数据不足，暂不评定（该社区为“评估中”，不计入达标）",
              "en": "!: below its threshold; ?: not enough data for a verdict (the "
                    "community is 'assessing' and does not count as meeting)"}
    return [*lines, legend[language]]


def cities(goals: list[CityGoal], target_year: int, language: Language) -> list[str]:
    """One line a city and one for the province: meeting, assessing, failing, urban
    communities, the share, and each milestone (the one in force marked ``*``)."""
    if not goals:
        return []
    heads = {"zh": ["达标", "评估中", "未达标", "城镇社区", "占比"],
             "en": ["meeting", "assessing", "failing", "urban", "share"]}[language]
    count = {"zh": "个数", "en": "count"}[language]
    total = province(goals)
    milestone_heads = [f"{'*' if m.year == target_year else ''}{m.year} "
                       + (count if m.minimum is not None else f"{(m.share or 0):.0%}")
                       for m in total.plan]
    lines = [pad(word("city", language), 10) + "".join(pad(h, 9, right=True) for h in heads)
             + "".join(pad(h, 14, right=True) for h in milestone_heads)]
    for g in [*goals, total]:
        met = g.met()
        name = word(schema.PROVINCE, language) if g.city == schema.PROVINCE else labels.city_name(
            g.city, language)
        cells = [str(g.meeting), str(g.assessing), str(g.failing), str(g.communities),
                 f"{g.share:.0%}"]
        marks = []
        for m in g.plan:
            need = f"{g.meeting}/{m.minimum}" if m.minimum is not None else f"{g.share:.0%}"
            marks.append(f"{need} {word('on_track' if met[m.year] else 'behind', language)}")
        lines.append(pad(name, 10) + "".join(pad(c, 9, right=True) for c in cells)
                     + "".join(pad(x, 14, right=True) for x in marks))
    note = {"zh": f"* 现行目标年份（kpi.target_year = {target_year}）；2020 年为达标社区个数，"
                  "2021、2022 年为占城镇社区总数的比例",
            "en": f"* the milestone in force (kpi.target_year = {target_year}); 2020 counts "
                  "green communities, 2021 and 2022 their share of the city's urban "
                  "communities"}
    return [*lines, note[language]]

