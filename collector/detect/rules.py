"""Domain rules: what operators of a retrofitted community want to be told, kind by kind.

Each rule looks at one reading or event of one device (a :class:`Seen`) with that device's
small rule state, and returns :class:`Verdict` s. Where a condition has a bound, the alert
clears at a looser one (hysteresis), so a value hovering at the bound does not flap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.detect import messages
from collector.detect.alerts import Verdict
from collector.settings import DetectSettings
from devices.labels import Language
from devices.registry import Device
from devices.schema import KIND_TAG_VALUES

HOUR_MS = 3_600_000


@dataclass(slots=True)
class Seen:
    """One reading (``fields``) or event (``event``) of one device, for the rules."""

    device: Device
    ts_ms: int
    hour: float                      # local hour of the day (China Standard Time)
    fields: dict[str, Any]           # a reading's values by name, None when not sent; empty
                                     # for an event. Read only: it is the model's own dict
    event: str | None
    detail: dict[str, Any]           # an event's own fields (result, method, code)
    state: dict[str, Any]            # this device's rule state, kept between readings
    open: Callable[[str], bool]      # is this rule's alert open for this device?
    settings: DetectSettings
    attrs: Mapping[str, Any]         # the device's registry attributes that passed their check
    moved: bool = False              # stamped later than received: no use for a rate
    language: Language = "en"        # of the alert messages (the collector: ui.language)

    def say(self, message: str, **values: Any) -> str:
        """An alert message in this reading's language (``collector/detect/messages.py``)."""
        return messages.say(self.language, message, **values)

    def noun(self, word: str) -> str:
        return messages.noun(self.language, word)


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0


#: The registry attributes the rules read, per kind: what each must be. Checked once when the
#: collector starts (``checked_attrs``); an attribute that fails is treated as absent, so the
#: part of a rule that needs it is skipped for that device and everything else goes on.
ATTRIBUTES: dict[str, dict[str, tuple[str, Callable[[Any], bool]]]] = {
    "streetlight": {"rated_power_w": ("a number of watts above 0", _positive_number)},
    "waste_bin": {"category": ("one of " + ", ".join(KIND_TAG_VALUES["category"]),
                               lambda v: v in KIND_TAG_VALUES["category"])},
    "water_level": {"use": ("a word such as rain_tank or drainage_well",
                            lambda v: isinstance(v, str) and bool(v.strip()))},
}


def checked_attrs(device: Device) -> tuple[Mapping[str, Any], list[str]]:
    """The device's attributes with every one that fails its check left out, and the
    problems found (each naming the attribute and what it should be)."""
    wanted = ATTRIBUTES.get(device.kind)
    if not wanted:
        return device.attrs, []
    bad = {name: what for name, (what, ok) in wanted.items()
           if name in device.attrs and not ok(device.attrs[name])}
    if not bad:
        return device.attrs, []
    problems = [f"attrs.{name} {device.attrs[name]!r} is not {what}" for name, what in
                bad.items()]
    return {k: v for k, v in device.attrs.items() if k not in bad}, problems


#: A rule returns a list, not a generator: most readings give no verdict, and a generator
#: built to yield nothing cost three times an empty list (issue 15).
Rule = Callable[[Seen], list[Verdict]]


def _rate_per_hour(s: Seen, key: str, value: float, alpha: float = 0.3) -> float | None:
    """Smoothed rate of change of ``value`` per hour, from this device's previous readings.

    None, and nothing learnt, for a reading whose stamp was moved: its time is not when it
    was measured, so a rate from it would be made up."""
    if s.moved:
        return None
    last = s.state.get(key)
    s.state[key] = (s.ts_ms, value, last[2] if last else 0.0)
    if last is None or s.ts_ms <= last[0]:
        return None
    rate = (value - last[1]) / ((s.ts_ms - last[0]) / HOUR_MS)
    smoothed: float = last[2] + alpha * (rate - last[2])
    s.state[key] = (s.ts_ms, value, smoothed)
    return smoothed


# --- lighting ---------------------------------------------------------------------------

def _quiet(s: Seen, rule: str, active: bool) -> bool:
    """Nothing to say: the rule is not active and its alert is not open. The common case by
    far; a rule then returns nothing (a verdict would change nothing), so no message is
    formatted for the reading."""
    return not active and not s.open(rule)


def streetlight(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event is not None:
        if s.event == "fault":
            out.append(Verdict("lamp_fault", True, "warning", 1.0,
                               s.say("lamp_fault", code=s.detail.get("code", "?"))))
        return out
    # The hot path of a lit streetlight (issue 15): the alert book's test and the fields
    # taken once into locals.
    f, cfg, opened = s.fields, s.settings, s.open
    if f and opened("lamp_fault"):  # a reading after a fault report: the lamp works again
        out.append(Verdict("lamp_fault", False, "warning"))
    on, lux = f.get("on"), f.get("lux")
    if on is not None and lux is not None:
        was = opened("lamp_dark")
        dark = on is False and lux < (cfg.lamp_dark_lux * (2 if was else 1))
        if dark or was:
            out.append(Verdict("lamp_dark", dark, "warning", lux,
                               s.say("lamp_dark", lux=lux)))
        was = opened("lamp_day_burning")
        burning = on is True and lux > cfg.lamp_daylight_lux * (0.5 if was else 1)
        if burning or was:
            out.append(Verdict("lamp_day_burning", burning, "info", lux,
                               s.say("lamp_day_burning", lux=lux)))
    power, dim = f.get("power_w"), f.get("dim_pct")
    if on and power is not None and dim:
        rated = float(s.attrs.get("rated_power_w", 0))
        if rated:
            expected = rated * dim / 100
            off_by = abs(power - expected) / expected
            was = opened("lamp_power")
            failing = off_by > cfg.lamp_power_tolerance * (0.7 if was else 1)
            if failing or was:
                out.append(Verdict("lamp_power", failing, "warning", power,
                                   s.say("lamp_power", power=power, expected=expected,
                                         off_by=off_by), off_by))
    _counter(s, "energy_kwh", out)
    return out


def _counter(s: Seen, name: str, out: list[Verdict]) -> None:
    """``counter_backwards`` for the counter ``name``, into ``out``."""
    value = s.fields.get(name)
    if value is None:
        return
    state = s.state
    previous = state.get(name)
    state[name] = value
    if previous is not None:
        back = value < previous - 1e-9
        if back or s.open("counter_backwards"):
            out.append(Verdict("counter_backwards", back, "warning", value,
                               s.say("counter_backwards", name=name, previous=previous,
                                     value=value)))


# --- waste ------------------------------------------------------------------------------

def waste_bin(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    cfg, f = s.settings, s.fields
    category = str(s.attrs.get("category", "other"))
    if s.event == "emptied":
        s.state["emptied_at"] = s.ts_ms
        out.append(Verdict("bin_not_emptied", False, "warning"))
        return out
    fill = f.get("fill_pct")
    if fill is not None:
        last_fill = s.state.get("last_fill")
        if last_fill is not None and fill < last_fill - 30:
            s.state["emptied_at"] = s.ts_ms  # a bin that empties itself has been collected
        s.state["last_fill"] = fill
        s.state.setdefault("emptied_at", s.ts_ms)
        rate = _rate_per_hour(s, "fill_rate", fill)
        was = s.open("bin_full")
        full = fill >= cfg.bin_full_pct - (10 if was else 0)
        if full or was:
            message = s.say("bin_full", fill=fill)
            if rate and rate > 0.1 and fill < 100:
                message = s.say("bin_full_eta", fill=fill, hours=(100 - fill) / rate)
            out.append(Verdict("bin_full", full, "warning", fill, message))
        hours = (s.ts_ms - s.state["emptied_at"]) / HOUR_MS
        limit = cfg.bin_max_hours_between_collections.get(category, 48.0)
        late = hours > limit and fill > 20
        if not _quiet(s, "bin_not_emptied", late):
            out.append(Verdict("bin_not_emptied", late, "warning", hours, s.say(
                "bin_not_emptied", category=s.noun(category), hours=hours, limit=limit)))
    temp = f.get("temp_c")
    if temp is not None:
        rise = _rate_per_hour(s, "temp_rate", temp) or 0.0
        was = s.open("bin_fire_risk")
        risk = temp >= cfg.bin_fire_temp_c - (5 if was else 0) or (
            rise >= cfg.bin_temp_rise_c_per_h and temp > 40)
        if risk or was:
            out.append(Verdict("bin_fire_risk", risk, "critical", temp,
                               s.say("bin_fire_risk", temp=temp, rise=rise)))
    return out


# --- water ------------------------------------------------------------------------------

def water_meter(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    f = s.fields
    _counter(s, "total_m3", out)
    pressure = f.get("pressure_kpa")
    if pressure is not None:
        out += _pressure_drop(s, pressure)
    flow = f.get("flow_m3h")
    if flow is not None and s.attrs.get("role") in ("inlet", "building"):
        out += _night_flow(s, flow)
    return out


def _pressure_drop(s: Seen, pressure: float) -> list[Verdict]:
    out: list[Verdict] = []
    base = s.state.get("pressure_base")
    if base is None:
        s.state["pressure_base"] = pressure
        return out
    drop = (base - pressure) / base if base > 0 else 0.0
    was = s.open("pressure_burst")
    burst = drop > s.settings.pressure_drop_pct / 100 * (0.5 if was else 1)
    if not burst:  # the baseline does not follow a burst
        s.state["pressure_base"] = base + 0.05 * (pressure - base)
    if burst or was:
        out.append(Verdict("pressure_burst", burst, "critical", pressure,
                           s.say("pressure_burst", pressure=pressure, drop=drop, base=base), drop))
    return out


def _night_flow(s: Seen, flow: float) -> list[Verdict]:
    """Minimum night flow (02:00-04:00): rising over several nights means a leak."""
    out: list[Verdict] = []
    cfg = s.settings
    day = (s.ts_ms + 8 * HOUR_MS) // (24 * HOUR_MS)
    if 2 <= s.hour < 4:
        tonight = s.state.get("night")
        if tonight is None or tonight[0] != day:
            s.state["night"] = (day, flow)
        else:
            s.state["night"] = (day, min(tonight[1], flow))
        return out
    tonight = s.state.pop("night", None)
    if tonight is None or s.hour < 4:
        return out
    nights: list[float] = s.state.setdefault("nights", [])
    nights.append(tonight[1])
    del nights[:-14]
    if len(nights) < cfg.leak_nights + 3:
        return out
    before = sorted(nights[:-cfg.leak_nights])
    baseline = before[len(before) // 2]
    rise = 1 + cfg.leak_night_rise_pct / 100 * (0.5 if s.open("leak_night_flow") else 1)
    recent = nights[-cfg.leak_nights:]
    leaking = all(n > baseline * rise and n - baseline > 0.05 for n in recent)
    out.append(Verdict("leak_night_flow", leaking, "warning", recent[-1],
                       s.say("leak_night_flow", flow=recent[-1], nights=cfg.leak_nights,
                             baseline=baseline), recent[-1] / max(baseline, 1e-6)))
    return out


def water_quality(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    cfg, f = s.settings, s.fields
    problems = []
    turbidity, chlorine, ph = f.get("turbidity_ntu"), f.get("chlorine_mg_l"), f.get("ph")
    if turbidity is not None and turbidity > cfg.turbidity_max_ntu:
        problems.append(s.say("turbidity", value=turbidity, limit=cfg.turbidity_max_ntu))
    if chlorine is not None and chlorine < cfg.chlorine_min_mg_l:
        problems.append(s.say("chlorine", value=chlorine, limit=cfg.chlorine_min_mg_l))
    if ph is not None and not cfg.ph_min <= ph <= cfg.ph_max:
        problems.append(s.say("ph", value=ph, low=cfg.ph_min, high=cfg.ph_max))
    if (turbidity is not None or chlorine is not None or ph is not None) and not _quiet(
            s, "water_quality", bool(problems)):
        out.append(Verdict("water_quality", bool(problems), "critical", float(len(problems)),
                           "; ".join(problems) or s.say("quality_ok")))
    return out


def water_level(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    level = s.fields.get("level_pct")
    if level is None:
        return out
    rate = _rate_per_hour(s, "level_rate", level)
    if rate is None:
        return out
    was = s.open("level_rising_fast")
    rising = rate > s.settings.level_rise_pct_per_h * (0.5 if was else 1)
    if rising or was:
        use = s.noun(str(s.attrs.get("use", "tank")))
        out.append(Verdict("level_rising_fast", rising, "warning", level,
                           s.say("level_rising_fast", use=use, rate=rate, level=level)))
    return out


# --- security ---------------------------------------------------------------------------

def door(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event == "forced":
        out.append(Verdict("door_forced", True, "critical", 1.0, s.say("door_forced")))
    elif s.event == "held_open":
        out.append(Verdict("door_held_open", True, "warning", 1.0, s.say("door_held_open")))
    elif s.event == "access":
        denied: list[int] = s.state.setdefault("denied", [])
        window = int(s.settings.denied_window_s * 1000)
        if s.detail.get("result") == "denied":
            denied.append(s.ts_ms)
        denied[:] = [t for t in denied if s.ts_ms - t <= window]
        out.append(Verdict("access_denied_repeatedly", len(denied) >= s.settings.denied_in_a_row,
                           "warning", float(len(denied)),
                           s.say("access_denied_repeatedly", n=len(denied),
                                 minutes=s.settings.denied_window_s / 60)))
    if s.fields.get("open") is False:  # closed again: the door incidents are over
        out.append(Verdict("door_forced", False, "critical"))
        out.append(Verdict("door_held_open", False, "warning"))
    return out


def smoke(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event == "alarm" or s.fields.get("alarm") is True:
        density = s.fields.get("smoke_db_m")   # None: not sent (or sent as null)
        out.append(Verdict("smoke_alarm", True, "critical", 1.0 if density is None else density,
                           s.say("smoke_alarm")))
    elif s.fields.get("alarm") is False:
        out.append(Verdict("smoke_alarm", False, "critical"))
    out += _tamper(s)
    return out


def intrusion(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event == "intrusion":
        out.append(Verdict("intrusion", True, "critical", 1.0, s.say("intrusion")))
    elif s.fields.get("armed") is False:
        out.append(Verdict("intrusion", False, "critical"))
    out += _tamper(s)
    return out


def camera(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event == "video_loss" or s.fields.get("recording") is False:
        out.append(Verdict("camera_video_loss", True, "warning", 0.0, s.say("camera_video_loss")))
    elif s.fields.get("recording") is True:
        out.append(Verdict("camera_video_loss", False, "warning"))
    out += _tamper(s)
    return out


def _tamper(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    if s.event == "tamper":
        out.append(Verdict("tamper", True, "warning", 1.0,
                           s.say("tamper", kind=s.noun(s.device.kind))))
    elif s.fields:
        out.append(Verdict("tamper", False, "warning"))
    return out


# --- any device -------------------------------------------------------------------------

#: Fields that vary in normal operation: the same value many times means a stuck sensor.
VARYING = {"streetlight": ("voltage_v", "temp_c"), "waste_bin": ("temp_c",),
           "water_meter": ("pressure_kpa", "temp_c"),
           "water_quality": ("turbidity_ntu", "chlorine_mg_l", "ph", "conductivity_us_cm"),
           "smoke": ("temp_c",)}


_SAME = {name: f"same:{name}" for names in VARYING.values() for name in names}


def any_device(s: Seen) -> list[Verdict]:
    out: list[Verdict] = []
    f, state = s.fields, s.state
    battery = f.get("battery_pct")
    if battery is not None:
        was = s.open("battery_low")
        low = battery < s.settings.battery_low_pct + (5 if was else 0)
        if low or was:
            out.append(Verdict("battery_low", low, "info", battery,
                               s.say("battery_low", battery=battery)))
    longest, stuck_field, stuck_value = 0, "", 0.0
    for name in VARYING.get(s.device.kind, ()):
        value = f.get(name)
        if value is None:
            continue
        key = _SAME[name]
        last = state.get(key)
        count = last[1] + 1 if last is not None and value == last[0] else 1
        state[key] = (value, count)
        if count > longest:
            longest, stuck_field, stuck_value = count, name, value
    if longest and ((stuck := longest >= s.settings.stuck_readings) or s.open("value_stuck")):
        out.append(Verdict("value_stuck", stuck, "warning", stuck_value,
                           s.say("value_stuck", field=stuck_field, value=stuck_value, n=longest)))
    return out

# --- the rules' state, typed ------------------------------------------------------------

def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


def _tuple(*parts: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, tuple) and len(v) == len(parts) and \
        all(check(x) for check, x in zip(parts, v, strict=True))


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_number(x) for x in value)


#: What each key of a device's rule state holds (the rules above write them). A snapshot is
#: checked against this when it is read back: an entry of another type is forgotten (that
#: rule learns it again) instead of failing a rule on every reading.
STATE_TYPES: dict[str, Callable[[Any], bool]] = {
    "fill_rate": _tuple(_number, _number, _number),       # _rate_per_hour: ts, value, rate
    "temp_rate": _tuple(_number, _number, _number),
    "level_rate": _tuple(_number, _number, _number),
    "energy_kwh": _number, "total_m3": _number,            # _counter: the last value
    "emptied_at": _number, "last_fill": _number,           # waste_bin
    "pressure_base": _number,                              # _pressure_drop
    "night": _tuple(_number, _number), "nights": _numbers,  # _night_flow: day, minimum
    "denied": _numbers,                                    # door: times of denied accesses
    **{key: _tuple(_number, _number) for key in _SAME.values()},   # value_stuck: value, count
}


def checked_state(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The entries of one device's rule state that have their type, and the keys dropped."""
    kept = {k: v for k, v in state.items() if k in STATE_TYPES and STATE_TYPES[k](v)}
    return kept, [k for k in state if k not in kept]


RULES: dict[str, tuple[Rule, ...]] = {
    "streetlight": (streetlight, any_device),
    "waste_bin": (waste_bin, any_device),
    "water_meter": (water_meter, any_device),
    "water_quality": (water_quality, any_device),
    "water_level": (water_level, any_device),
    "door": (door, any_device),
    "smoke": (smoke, any_device),
    "intrusion": (intrusion, any_device),
    "camera": (camera, any_device),
}
