"""The dashboards' and the report's words in the operators' language.

The code writes English; ``Texts("zh")`` gives each text's Chinese, and a text with none is
an error when the dashboards are built (``sct dashboards build`` and its test fail), never
English left in a Chinese board. Queries, ids and column names never change with the
language: only what Grafana shows (titles, labels, display names, value mappings).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices import labels
from devices.labels import Language

ZH: dict[str, str] = {
    # Boards and variables
    "Smart communities: overview": "智慧社区：总览",
    "Streetlights": "路灯",
    "Waste sorting: bins": "垃圾分类：垃圾桶",
    "Water: supply, leaks, quality, rain tanks": "供水：用水、漏损、水质、雨水池",
    "Security": "智能安防",
    "Alerts": "告警",
    "Collector health": "采集服务运行状况",
    "Green-community goal": "绿色社区创建目标",
    "City": "城市",
    "Community": "社区",
    "Device": "设备",
    # Overview
    "Devices online (last status)": "在线设备（最近状态）",
    "Communities reporting": "上报数据的社区",
    "Open alerts by severity": "未关闭告警（按级别）",
    "Readings accepted per second": "每秒接收读数",
    "Devices by last status (green online, red offline)": "设备分布（绿色在线，红色离线）",
    # Lighting
    "Lamps dimming level (mean %)": "路灯调光水平（平均 %）",
    "Ambient light (lx, mean) — dark below 10 lx": "环境照度（lx，平均）— 低于 10 lx 为天黑",
    "Power drawn per community (W)": "各社区路灯功率（W）",
    "Energy used in the range per community (kWh)": "各社区时段内用电量（kWh）",
    "Energy saved by dimming (share of rated)": "调光节能率（占额定功率）",
    "Lamp faults and lamp alerts": "路灯故障与告警",
    # Waste
    "Fill level by category (mean %)": "各类垃圾桶满溢度（平均 %）",
    "Bins near overflow, with the forecast time to full": "将满的垃圾桶及预计装满时间",
    "Collections (bins emptied)": "清运次数（垃圾桶清空）",
    # Water
    "Inlet flow (m³/h)": "进水流量（m³/h）",
    "Night-time minimum flow by day (m³/h) — rising means a leak":
        "每日夜间最小流量（m³/h）— 上升意味着漏损",
    "Pressure (kPa)": "水压（kPa）",
    "Quality: turbidity (NTU, norm ≤ 1), free chlorine (mg/L, ≥ 0.05), pH (6.5-8.5)":
        "水质：浑浊度（NTU，限值 ≤ 1）、游离氯（mg/L，≥ 0.05）、pH（6.5-8.5）",
    "turbidity": "浑浊度", "chlorine": "游离氯",
    "Rain tanks and drainage wells (level %)": "雨水池与排水井（水位 %）",
    # Security
    "Door access by result": "门禁通行（按结果）",
    "Doors forced or held open, alarms": "强行开门、门未关、报警",
    "Cameras recording (share of readings)": "摄像头录像率",
    # Alerts
    "Alerts raised by rule": "告警次数（按规则）",
    "Alerts, raised and cleared": "告警记录（触发与解除）",
    # Collector
    "Messages received, lines written, rejected (per second)": "接收消息、写入行、拒收（每秒）",
    "All collectors: messages received (per second)": "全部采集服务：接收消息（每秒）",
    "Rejected by reason (total)": "拒收（按原因，累计）",
    "Spool backlog (lines), unacknowledged messages, partitions active (cluster mode)":
        "缓存积压（行）、未确认消息、活动分区（集群模式）",
    "Seconds since the last write": "距上次写入（秒）",
    "Collector alerts": "采集服务告警",
    # Goal
    "Communities meeting every indicator": "全部指标达标的社区",
    "Communities being assessed (not enough data)": "评估中的社区（数据不足）",
    "Communities failing": "未达标的社区",
    "Share of urban communities meeting": "达标社区占城镇社区比例",
    "City share meeting the goal": "各市达标社区占比",
    "Green communities per city": "各市绿色社区个数",
    "Milestones per city (* the one in force)": "各市阶段目标（* 为现行目标）",
    "Per community: indicators by the plan's areas": "各社区指标（按创建内容分类）",
    "Data enough for a verdict": "数据是否足以评定",
    "meeting": "达标", "failing": "未达标",
    "urban communities": "城镇社区数", "share meeting": "达标占比",
    "count": "个数", "share": "占比",
    "name": "名称",
    # The words the command line and the report share ("meets", "assessing", "on track",
    # "behind", "not enough data", ...): devices/labels.py, not spelt twice.
    **{en: zh for zh, en in labels.WORDS.values()},
}

@dataclass(frozen=True)
class Texts:
    """``t("English text")``: the text in ``language``."""

    language: Language

    def __call__(self, text: str) -> str:
        if self.language == "en":
            return text
        try:
            return ZH[text]
        except KeyError:
            raise KeyError(f"dashboards/texts.py: no Chinese for {text!r}") from None

    def values(self, values: tuple[str, ...] | list[str]) -> dict[str, str]:
        """Tag values -> how a legend shows them (unknown ones as they are)."""
        if self.language == "en":
            return {}
        return {v: labels.value(v, "zh") for v in values if v in labels.VALUES}
