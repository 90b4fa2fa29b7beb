"""Where the simulated communities are: the 13 cities of Hebei with a few districts each.

Coordinates are city centres (enough for sunrise and sunset); weights are rough shares of
the urban population, so a generated registry has more communities where more people live.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class City:
    name: str
    code: str
    lat: float
    lon: float
    weight: int
    districts: tuple[str, ...]


CITIES: tuple[City, ...] = (
    City("shijiazhuang", "sjz", 38.04, 114.51, 16, ("changan", "qiaoxi", "xinhua", "yuhua")),
    City("tangshan", "ts", 39.63, 118.18, 11, ("lubei", "lunan", "kaiping", "fengrun")),
    City("qinhuangdao", "qhd", 39.94, 119.60, 5, ("haigang", "shanhaiguan", "beidaihe")),
    City("handan", "hd", 36.61, 114.49, 11, ("congtai", "hanshan", "fuxing")),
    City("xingtai", "xt", 37.07, 114.50, 7, ("xiangdu", "xindu")),
    City("baoding", "bd", 38.87, 115.46, 11, ("jingxiu", "lianchi", "mancheng")),
    City("zhangjiakou", "zjk", 40.77, 114.89, 5, ("qiaodong", "qiaoxi", "xuanhua")),
    City("chengde", "cd", 40.95, 117.96, 4, ("shuangqiao", "shuangluan")),
    City("cangzhou", "cz", 38.30, 116.84, 8, ("xinhua", "yunhe")),
    City("langfang", "lf", 39.54, 116.68, 6, ("anci", "guangyang")),
    City("hengshui", "hs", 37.74, 115.67, 5, ("taocheng", "jizhou")),
    City("dingzhou", "dz", 38.52, 114.99, 2, ("beicheng", "nancheng")),
    City("xinji", "xj", 37.94, 115.22, 2, ("xinji",)),
)

BY_NAME = {city.name: city for city in CITIES}

# Community names: a place word and a suffix, as residents would say them.
NAME_HEADS = ("槐中路", "裕华", "建设", "和平", "光明", "胜利", "新华", "育才", "友谊", "长安",
              "民族", "红旗", "朝阳", "东风", "青年", "振兴", "幸福", "康宁", "翠屏", "滨河")
NAME_TAILS = ("社区", "小区", "家园", "花园", "里社区", "苑")
