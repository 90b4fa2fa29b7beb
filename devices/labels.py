"""What people read: the cities, the green-community indicators and the plan's areas, in
Chinese (the default) and English.

Only display text lives here. Ids and tags in InfluxDB stay as they are (``shijiazhuang``,
``bd-mancheng-001``); the dashboards, ``sct kpi``, ``sct report`` and alert messages show
these names instead. A community's own name is the registry's ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")


def pick(zh: str, en: str, language: Language) -> str:
    """The text of ``language`` from a pair: every display text here comes in both."""
    return zh if language == "zh" else en


@dataclass(frozen=True, slots=True)
class City:
    id: str
    zh: str
    en: str
    #: Dingzhou and Xinji: county-level cities administered by the province, with a smaller
    #: 2020 minimum in the plan.
    county_level: bool = False

    def name(self, language: Language) -> str:
        return pick(self.zh, self.en, language)


#: The 11 prefecture-level cities of Hebei and the two directly administered county-level
#: cities, in the province's usual order.
CITIES: tuple[City, ...] = (
    City("shijiazhuang", "石家庄", "Shijiazhuang"), City("tangshan", "唐山", "Tangshan"),
    City("qinhuangdao", "秦皇岛", "Qinhuangdao"), City("handan", "邯郸", "Handan"),
    City("xingtai", "邢台", "Xingtai"), City("baoding", "保定", "Baoding"),
    City("zhangjiakou", "张家口", "Zhangjiakou"), City("chengde", "承德", "Chengde"),
    City("cangzhou", "沧州", "Cangzhou"), City("langfang", "廊坊", "Langfang"),
    City("hengshui", "衡水", "Hengshui"), City("dingzhou", "定州", "Dingzhou", True),
    City("xinji", "辛集", "Xinji", True),
)
BY_ID = {c.id: c for c in CITIES}


def city_name(city_id: str, language: Language) -> str:
    """The city's display name; an unknown id is shown as it is."""
    city = BY_ID.get(city_id)
    return city.name(language) if city else city_id


@dataclass(frozen=True, slots=True)
class Area:
    """One of the plan's areas of requirements, and the part of it an indicator measures."""

    id: str
    zh: str
    en: str

    def name(self, language: Language) -> str:
        return pick(self.zh, self.en, language)


#: The plan's three areas, in its order.
AREAS: tuple[Area, ...] = (
    Area("infrastructure", "基础设施绿色化", "Infrastructure made green"),
    Area("liveable", "营造宜居环境", "A liveable environment"),
    Area("smart", "智慧社区", "Smart community"),
)

@dataclass(frozen=True, slots=True)
class Indicator:
    area: str   # an Area id
    zh: str     # the area's requirement it measures, and what
    en: str
    zh_short: str   # a table column's head
    en_short: str

    def name(self, language: Language, short: bool = False) -> str:
        if short:
            return pick(self.zh_short, self.en_short, language)
        return pick(self.zh, self.en, language)


#: The green-community indicators by the plan's areas, in display order.
INDICATORS: dict[str, Indicator] = {
    "water_quality_compliance": Indicator("infrastructure", "供水：水质达标率",
                                          "water supply: quality compliance", "水质", "quality"),
    "leak_indicator": Indicator("infrastructure", "供水：夜间最小流量比（漏损）",
                                "water supply: night-flow ratio (leaks)", "漏损", "leak"),
    "bin_overflow_rate": Indicator("infrastructure", "垃圾分类：垃圾桶满溢率",
                                   "waste sorting: bins overflowing", "满溢", "overflow"),
    "lamps_per_100_households": Indicator("liveable", "道路照明：每百户路灯数",
                                          "street lighting: lamps per 100 households",
                                          "路灯", "lamps"),
    "lamp_availability": Indicator("liveable", "道路照明：路灯完好率",
                                   "street lighting: lamps working", "完好", "working"),
    "energy_saving": Indicator("liveable", "道路照明：调光节能率",
                               "street lighting: energy saved by dimming", "节能", "saving"),
    "security_per_100_households": Indicator("smart", "智能安防：每百户安防设备数",
                                             "smart security: devices per 100 households",
                                             "安防", "security"),
    "device_online_rate": Indicator("smart", "智慧市政设施：设备在线率",
                                    "smart municipal facilities: devices online",
                                    "在线", "online"),
}


def indicator(name: str, language: Language, short: bool = False) -> str:
    return INDICATORS[name].name(language, short)


def area_of(name: str) -> Area:
    return next(a for a in AREAS if a.id == INDICATORS[name].area)


def by_area() -> list[tuple[Area, list[str]]]:
    """Each area with its indicators, in display order."""
    return [(a, [n for n, i in INDICATORS.items() if i.area == a.id]) for a in AREAS]


#: Words shared by the command line, the report and the dashboards: key -> (zh, en).
WORDS: dict[str, tuple[str, str]] = {
    "meets": ("达标", "meets"),
    "fails": ("未达标", "fails"),
    "assessing": ("评估中", "assessing"),
    "not_enough_data": ("数据不足", "not enough data"),
    "on_track": ("达到", "on track"),
    "behind": ("落后", "behind"),
    "province": ("全省", "province"),
    "city": ("城市", "city"),
    "community": ("社区", "community"),
}


def word(key: str, language: Language) -> str:
    return pick(*WORDS[key], language)


#: Tag values people read: the four kinds of sorted waste (the national standard's names),
#: door access results. key -> (zh, en).
VALUES: dict[str, tuple[str, str]] = {
    "kitchen": ("厨余垃圾", "kitchen"), "recyclable": ("可回收物", "recyclable"),
    "hazardous": ("有害垃圾", "hazardous"), "other": ("其他垃圾", "other"),
    "granted": ("允许", "granted"), "denied": ("拒绝", "denied"),
}


def value(key: str, language: Language) -> str:
    return pick(*VALUES[key], language)
