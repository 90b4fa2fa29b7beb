"""Device alert messages in the operators' language (``ui.language``: ``zh`` by default).

Rules name a message and its values; the words are here, once per language. The rule id,
severity, value and score of an alert do not change with the language, and field names
(``energy_kwh``) stay as they are in InfluxDB. The collector's own alerts
(``collector/health.py``: spool, writes, storage, registry) stay in English: they are for
whoever runs the collector, with file names and settings in them.
"""

from __future__ import annotations

from typing import Any

from devices import labels
from devices.labels import Language

#: message -> (zh, en), ``str.format`` templates.
TEMPLATES: dict[str, tuple[str, str]] = {
    "lamp_fault": ("路灯报告故障 {code}", "lamp reports fault {code}"),
    "lamp_dark": ("天黑时路灯未亮（{lux:.0f} lx）",
                  "lamp off while dark outside ({lux:.0f} lx)"),
    "lamp_day_burning": ("白天路灯亮着（{lux:.0f} lx）：浪费电能",
                         "lamp on in daylight ({lux:.0f} lx): wasted energy"),
    "lamp_power": ("功率 {power:.0f} W，应约为 {expected:.0f} W（偏差 {off_by:.0%}）："
                   "驱动或灯具故障",
                   "drawing {power:.0f} W, expected about {expected:.0f} W ({off_by:.0%} off): "
                   "failing driver or lamp"),
    "counter_backwards": ("{name} 从 {previous:g} 倒退到 {value:g}",
                          "{name} went back from {previous:g} to {value:g}"),
    "bin_full": ("垃圾桶已装至 {fill:.0f} %", "bin at {fill:.0f} %"),
    "bin_full_eta": ("垃圾桶已装至 {fill:.0f} %，约 {hours:.1f} 小时后装满",
                     "bin at {fill:.0f} %, full in about {hours:.1f} h"),
    "bin_not_emptied": ("{category}桶已 {hours:.0f} 小时未清运（规定 {limit:.0f} 小时）",
                        "{category} bin not emptied for {hours:.0f} h (schedule: {limit:.0f} h)"),
    "bin_fire_risk": ("垃圾桶温度 {temp:.0f} °C，每小时上升 {rise:.0f} °C：有火灾风险",
                      "bin at {temp:.0f} °C, rising {rise:.0f} °C/h: fire risk"),
    "pressure_burst": ("水压 {pressure:.0f} kPa，比平时 {base:.0f} 低 {drop:.0%}：可能爆管",
                       "pressure {pressure:.0f} kPa, {drop:.0%} under its usual {base:.0f}: "
                       "a burst main?"),
    "leak_night_flow": ("连续 {nights} 晚夜间最小流量 {flow:.2f} m³/h，平时 {baseline:.2f}："
                        "可能漏水",
                        "night minimum flow {flow:.2f} m³/h for {nights} nights, usually "
                        "{baseline:.2f}: a leak?"),
    "turbidity": ("浑浊度 {value:.2f} NTU > {limit:g}", "turbidity {value:.2f} NTU > {limit:g}"),
    "chlorine": ("游离氯 {value:.3f} mg/L < {limit:g}",
                 "free chlorine {value:.3f} mg/L < {limit:g}"),
    "ph": ("pH {value:.2f} 超出 {low:g}-{high:g}", "pH {value:.2f} outside {low:g}-{high:g}"),
    "quality_ok": ("水质符合标准", "quality within the norms"),
    "level_rising_fast": ("{use}水位每小时上涨 {rate:.0f} %，现为 {level:.0f} %",
                          "{use} filling at {rate:.0f} %/h, now {level:.0f} %"),
    "door_forced": ("门被强行打开", "door forced open"),
    "door_held_open": ("门长时间未关", "door held open"),
    "access_denied_repeatedly": ("{minutes:.0f} 分钟内 {n} 次通行被拒",
                                 "{n} denied access attempts in {minutes:.0f} min"),
    "smoke_alarm": ("烟雾报警", "smoke alarm"),
    "intrusion": ("检测到入侵", "intrusion detected"),
    "camera_video_loss": ("摄像头视频信号丢失", "camera lost its video"),
    "tamper": ("{kind}被拆动", "{kind} tampered with"),
    "battery_low": ("电池电量 {battery:.0f} %", "battery at {battery:.0f} %"),
    "value_stuck": ("{field} 连续 {n} 次读数停在 {value:g}",
                    "{field} stuck at {value:g} for {n} readings"),
    "anomaly_field": ("{name} {value:g} 对该设备而言不寻常",
                      "{name} {value:g} is unusual for this device"),
    "anomaly": ("多项读数同时异常：{drivers}（占偏差的比例）",
                "unusual together: {drivers} of the difference"),
    "anomaly_jump": ("{name} 从 {previous:g} 突变到 {value:g}：该设备从未有过的跳变",
                     "{name} jumped from {previous:g} to {value:g}, a jump this device "
                     "has never made"),
    "anomaly_shift": ("{name} 最近 {n} 个读数的均值从约 {previous:g} 变到 {value:g}：该设备"
                      "从未有过的变化",
                      "the mean of {name}'s last {n} readings moved from about {previous:g} "
                      "to {value:g}, a change this device has never made"),
    "device_offline": ("设备报告离线（或其遗嘱消息）",
                       "device says it is offline (or its last will)"),
    "device_silent": ("{minutes:.0f} 分钟没有读数（通常每 {usual:.1f} 分钟一次）",
                      "no reading for {minutes:.0f} min (usually every {usual:.1f} min)"),
}

#: What a device is, and what a water level sensor watches, as a message names them.
NOUNS: dict[str, tuple[str, str]] = {
    "streetlight": ("路灯", "streetlight"), "waste_bin": ("垃圾桶", "waste bin"),
    "water_meter": ("水表", "water meter"), "water_quality": ("水质监测仪", "water quality probe"),
    "water_level": ("液位计", "water level sensor"), "door": ("门禁", "door"),
    "smoke": ("烟感", "smoke detector"), "intrusion": ("入侵探测器", "intrusion detector"),
    "camera": ("摄像头", "camera"),
    "tank": ("水池", "tank"), "rain_tank": ("雨水池", "rain tank"),
    "drainage_well": ("排水井", "drainage well"),
}


def say(language: Language, message: str, **values: Any) -> str:
    """The ``message`` with its ``values``, in ``language``."""
    return labels.pick(*TEMPLATES[message], language).format(**values)


def noun(language: Language, word: str) -> str:
    """A kind, a waste category or a level sensor's use as a message names it; one we have
    no word for as it is (underscores as spaces)."""
    if word in NOUNS:
        return labels.pick(*NOUNS[word], language)
    if word in labels.VALUES:
        return labels.value(word, language)
    return word.replace("_", " ")
