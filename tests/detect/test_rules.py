"""Domain rules and the alert lifecycle, reading by reading, without any server."""

from __future__ import annotations

import re
from typing import Any

from collector.decode import Decoded
from collector.detect import messages
from collector.detect.alerts import AlertBook
from collector.detect.stage import DetectStage
from collector.settings import DetectSettings
from devices.labels import Language
from devices.payloads import EVENT_MODELS, TELEMETRY_MODELS
from devices.registry import from_mapping
from devices.topics import DeviceTopic

REGISTRY = from_mapping({
    "communities": [{"id": "c1", "city": "xinji", "district": "xinji", "households": 600}],
    "devices": [
        {"id": "lamp", "kind": "streetlight", "community": "c1", "attrs": {"rated_power_w": 100}},
        {"id": "bin", "kind": "waste_bin", "community": "c1", "attrs": {"category": "kitchen"}},
        {"id": "inlet", "kind": "water_meter", "community": "c1", "attrs": {"role": "inlet"}},
        {"id": "quality", "kind": "water_quality", "community": "c1"},
        {"id": "tank", "kind": "water_level", "community": "c1", "attrs": {"use": "rain_tank"}},
        {"id": "door", "kind": "door", "community": "c1"},
        {"id": "smoke", "kind": "smoke", "community": "c1"},
        {"id": "cam", "kind": "camera", "community": "c1"},
    ],
})
T0 = 1_795_000_000_000 - (1_795_000_000_000 + 8 * 3_600_000) % 86_400_000  # local midnight
MIN = 60_000


class Run:
    def __init__(self, language: Language = "en", **settings: Any) -> None:
        self.stage = DetectStage(REGISTRY, DetectSettings(statistical=False, **settings),
                                 AlertBook(), language)
        self.log: list[tuple[str, str, str]] = []

    def reading(self, device: str, ts: int, **fields: Any) -> None:
        kind = REGISTRY.devices[device].kind
        body = TELEMETRY_MODELS[kind].model_validate({**fields, "ts": ts})
        self._feed(Decoded(DeviceTopic("c1", kind, device, "telemetry"), body, ts, None, {}))

    def event(self, device: str, ts: int, **fields: Any) -> None:
        kind = REGISTRY.devices[device].kind
        body = EVENT_MODELS[kind].validate_python({**fields, "ts": ts})
        self._feed(Decoded(DeviceTopic("c1", kind, device, "event"), body, ts, None, {}))

    def status(self, device: str, ts: int, online: bool) -> None:
        kind = REGISTRY.devices[device].kind
        self._feed(Decoded(DeviceTopic("c1", kind, device, "status"), None, ts, online, ""))

    def _feed(self, item: Decoded) -> None:
        for alert in self.stage.observe(item):
            self.log.append((alert.device, alert.rule, alert.state))

    def states(self, rule: str) -> list[str]:
        return [state for _, r, state in self.log if r == rule]


def test_lamp_off_in_the_dark_raises_once_and_clears_with_hysteresis() -> None:
    run = Run()
    run.reading("lamp", T0, on=False, lux=2.0)
    run.reading("lamp", T0 + MIN, on=False, lux=3.0)
    run.reading("lamp", T0 + 2 * MIN, on=False, lux=15.0)  # under twice the bound: still open
    run.reading("lamp", T0 + 3 * MIN, on=True, lux=2.0, dim_pct=100.0, power_w=99.0)
    assert run.states("lamp_dark") == ["raised", "cleared"]
    assert run.states("lamp_power") == []


def test_lamp_burning_by_day_failing_driver_and_counter_going_back() -> None:
    run = Run()
    run.reading("lamp", T0, on=True, lux=50_000.0, dim_pct=100.0, power_w=40.0,
                energy_kwh=10.0)
    run.reading("lamp", T0 + MIN, on=True, lux=50_000.0, dim_pct=100.0, power_w=41.0,
                energy_kwh=9.0)
    assert run.states("lamp_day_burning") == ["raised"]
    assert run.states("lamp_power") == ["raised"]
    assert run.states("counter_backwards") == ["raised"]


def test_bin_full_with_a_forecast_and_fire_risk() -> None:
    run = Run()
    for i, fill in enumerate([70.0, 80.0, 88.0, 92.0]):
        run.reading("bin", T0 + i * 30 * MIN, fill_pct=fill, temp_c=20.0)
    run.reading("bin", T0 + 150 * MIN, fill_pct=5.0, temp_c=20.0)
    assert run.states("bin_full") == ["raised", "cleared"]
    run.reading("bin", T0 + 160 * MIN, fill_pct=5.0, temp_c=75.0)
    assert run.states("bin_fire_risk") == ["raised"]


def test_bin_forecast_is_in_the_message() -> None:
    run = Run()
    for i, fill in enumerate([60.0, 70.0, 80.0, 91.0]):
        run.reading("bin", T0 + i * 60 * MIN, fill_pct=fill)
    (alert,) = run.stage.book.open
    assert alert.rule == "bin_full" and "full in about" in alert.message


def test_messages_in_chinese_name_the_same_values() -> None:
    run = Run("zh")
    for i, fill in enumerate([60.0, 70.0, 80.0, 91.0]):
        run.reading("bin", T0 + i * 60 * MIN, fill_pct=fill)
    run.reading("lamp", T0, on=False, lux=2.0)
    messages_ = {a.rule: a.message for a in run.stage.book.open}
    assert messages_["bin_full"] == "垃圾桶已装至 91 %，约 1.3 小时后装满", messages_
    assert messages_["lamp_dark"] == "天黑时路灯未亮（2 lx）"


def test_every_message_has_both_languages_with_the_same_values() -> None:
    fields = re.compile(r"{(\w+)")
    for key, (zh, en) in messages.TEMPLATES.items():
        assert sorted(fields.findall(zh)) == sorted(fields.findall(en)), key
        assert re.search(r"[\u4e00-\u9fff]", zh), key
    assert messages.noun("zh", "kitchen") == "厨余垃圾" and messages.noun("zh", "x_y") == "x y"


def test_bin_not_emptied_on_schedule() -> None:
    run = Run()
    for hour in range(0, 30, 2):
        run.reading("bin", T0 + hour * 60 * MIN, fill_pct=min(100.0, 30.0 + hour))
    assert run.states("bin_not_emptied") == ["raised"]
    run.event("bin", T0 + 31 * 60 * MIN, type="emptied")
    assert run.states("bin_not_emptied") == ["raised", "cleared"]


def test_night_flow_rising_for_nights_is_a_leak() -> None:
    run = Run()
    for night in range(12):
        base = 2.0 if night < 8 else 4.0  # a leak starts on the ninth night
        for hour in (2.5, 3.5, 5.0, 12.0):
            run.reading("inlet", T0 + night * 1440 * MIN + int(hour * 60) * MIN,
                        flow_m3h=base + (0 if hour < 4 else 10), pressure_kpa=350.0)
    assert run.states("leak_night_flow") == ["raised"]


def test_pressure_burst_quality_and_a_tank_filling_fast() -> None:
    run = Run()
    for i in range(20):
        run.reading("inlet", T0 + i * MIN, pressure_kpa=350.0, flow_m3h=10.0)
    run.reading("inlet", T0 + 21 * MIN, pressure_kpa=150.0, flow_m3h=10.0)
    run.reading("inlet", T0 + 22 * MIN, pressure_kpa=345.0, flow_m3h=10.0)
    assert run.states("pressure_burst") == ["raised", "cleared"]
    run.reading("quality", T0, turbidity_ntu=0.3, chlorine_mg_l=0.3, ph=7.2)
    run.reading("quality", T0 + MIN, turbidity_ntu=1.5, chlorine_mg_l=0.3, ph=7.2)
    run.reading("quality", T0 + 2 * MIN, turbidity_ntu=0.3, chlorine_mg_l=0.01, ph=9.0)
    run.reading("quality", T0 + 3 * MIN, turbidity_ntu=0.3, chlorine_mg_l=0.3, ph=7.2)
    assert run.states("water_quality") == ["raised", "cleared"]
    for i, level in enumerate([30.0, 30.5, 31.0, 45.0, 60.0, 75.0]):
        run.reading("tank", T0 + i * 10 * MIN, level_pct=level, level_m=level / 33)
    assert run.states("level_rising_fast") == ["raised"]


def test_security_events() -> None:
    run = Run()
    run.event("door", T0, type="forced")
    run.event("door", T0 + MIN, type="forced")  # open already: not raised again
    run.reading("door", T0 + 2 * MIN, open=False)
    assert run.states("door_forced") == ["raised", "cleared"]
    for i in range(3):
        run.event("door", T0 + (3 + i) * MIN, type="access", result="denied", method="card")
    assert run.states("access_denied_repeatedly") == ["raised"]
    run.event("door", T0 + 30 * MIN, type="access", result="granted", method="face")
    assert run.states("access_denied_repeatedly") == ["raised", "cleared"]
    run.event("smoke", T0, type="alarm")
    run.reading("smoke", T0 + MIN, alarm=False, smoke_db_m=0.01)
    assert run.states("smoke_alarm") == ["raised", "cleared"]
    run.event("cam", T0, type="video_loss")
    run.reading("cam", T0 + MIN, recording=True)
    assert run.states("camera_video_loss") == ["raised", "cleared"]


def test_a_smoke_alarm_without_its_density_still_becomes_an_alert_point() -> None:
    """A reading's fields not sent (or sent as null) are None to the rules, never a default."""
    from collector.sink.lineprotocol import encode
    for sent in ({}, {"smoke_db_m": None}):
        stage = DetectStage(REGISTRY, DetectSettings(statistical=False), AlertBook())
        body = TELEMETRY_MODELS["smoke"].model_validate({"ts": T0, "alarm": True, **sent})
        (alert,) = stage.observe(Decoded(DeviceTopic("c1", "smoke", "smoke", "telemetry"),
                                         body, T0, None, {}))
        assert (alert.rule, alert.state, alert.value) == ("smoke_alarm", "raised", 1.0)
        assert b"value=1.0," in encode(alert.point())


def test_any_device_battery_stuck_offline_and_silent() -> None:
    run = Run(stuck_readings=5, silent_min_s=60)
    for i in range(6):
        run.reading("smoke", T0 + i * MIN, battery_pct=15.0, temp_c=21.0)
    assert run.states("battery_low") == ["raised"]
    assert run.states("value_stuck") == ["raised"]
    run.status("smoke", T0 + 7 * MIN, online=False)
    assert run.states("device_offline") == ["raised"]
    run.status("smoke", T0 + 8 * MIN, online=True)
    assert run.states("device_offline") == ["raised", "cleared"]
    ticked = run.stage.tick(T0 + 30 * MIN)
    assert [(a.rule, a.state) for a in ticked] == [("device_silent", "raised")]
    assert run.stage.tick(T0 + 31 * MIN) == [], "an open alert is not raised again"
    run.reading("smoke", T0 + 32 * MIN, battery_pct=30.0, temp_c=22.0)
    assert run.states("device_silent") == ["cleared"]
    assert run.states("battery_low") == ["raised", "cleared"]
