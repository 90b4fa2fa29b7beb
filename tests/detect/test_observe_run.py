"""A message's readings taken together (``DetectStage.observe_many``, which looks a device up
once per message) give what taking them one by one (``observe``) gives: the same alerts,
in the same order, and the same state after."""

from __future__ import annotations

import random
from typing import Any

import pytest

from collector.decode import Decoded
from collector.detect.alerts import Alert, AlertBook
from collector.detect.stage import DetectStage
from collector.settings import DetectSettings
from devices.payloads import EVENT_MODELS, TELEMETRY_MODELS
from devices.topics import DeviceTopic
from tests.detect.test_rules import MIN, REGISTRY, T0


def reading(rng: random.Random, kind: str, step: int) -> dict[str, Any]:
    """Quiet stretches of 25 readings (every alert clears, so a device's set of open rules
    empties) between wild ones whose values wander across the rules' bounds, so alerts
    are raised and cleared inside one message; now and then a value sticks."""
    wild = step % 50 >= 25

    def near(quiet: float, *wilder: float) -> float:
        centre = rng.choice(wilder) if wild and wilder else quiet
        return round(centre * rng.uniform(0.9, 1.1) if wild else centre * rng.uniform(0.99, 1.01),
                     1 if rng.random() < 0.3 else 3)
    if kind == "streetlight":
        on = not wild or rng.random() < 0.7
        return {"on": on, "lux": near(5, 5, 15, 1200), "dim_pct": 100.0 if on else 0.0,
                "power_w": near(100, 100, 60) if on else 0.0, "voltage_v": near(220),
                "energy_kwh": 100 + step * 0.01 - (5 if wild and rng.random() < 0.05 else 0),
                "temp_c": 20.0 if step % 150 < 40 else near(20)}   # stuck a while
    if kind == "waste_bin":
        return {"fill_pct": min(100.0, near(50, 92, 85)), "temp_c": near(25, 45, 65),
                "battery_pct": near(80, 18, 30)}
    if kind == "water_meter":
        return {"flow_m3h": near(2, 8), "pressure_kpa": near(300, 300, 180),
                "total_m3": 1000 + step * 0.1, "temp_c": near(12)}
    if kind == "water_quality":
        return {"turbidity_ntu": near(0.3, 0.3, 1.5), "chlorine_mg_l": near(0.3, 0.3, 0.04),
                "ph": near(7.2, 7.2, 9.0), "conductivity_us_cm": near(400)}
    assert kind == "water_level"
    return {"level_pct": 40.0 + (rng.uniform(0, 30) if wild else 0.0)}


TOPICS: dict[tuple[str, str], DeviceTopic] = {}


def item(kind: str, device: str, ts: int, channel: str, body: Any = None,
         online: bool | None = None) -> Decoded:
    # One topic object per device and channel, as the decoder's cache gives them.
    where = TOPICS.setdefault((device, channel), DeviceTopic("c1", kind, device, channel))
    return Decoded(where, body, ts, online, {})


def messages(seed: int) -> list[list[Decoded]]:
    """Each device's readings as arrays of 1-50, with status changes and events between
    them and gaps long enough to open ``device_silent``; devices interleaved."""
    rng = random.Random(seed)
    out: list[tuple[int, list[Decoded]]] = []
    for device in ("lamp", "bin", "inlet", "quality", "tank"):
        kind = REGISTRY.devices[device].kind
        ts, step = T0, 0
        while step < 1_600:     # past a minute device's warm-up of a day
            size = rng.choice((1, 2, 50, rng.randint(3, 50)))
            items = []
            for _ in range(size):
                ts += MIN if rng.random() < 0.95 else 20 * MIN
                model = TELEMETRY_MODELS[kind].model_validate(
                    {**reading(rng, kind, step), "ts": ts})
                items.append(item(kind, device, ts, "telemetry", model))
                step += 1
            out.append((items[0].ts_ms, items))
            if rng.random() < 0.05:
                out.append((ts, [item(kind, device, ts, "status", online=rng.random() < 0.5)]))
            if kind == "waste_bin" and rng.random() < 0.1:
                # one event or an array of two (they go the general way, one by one)
                events = [item(kind, device, ts + k, "event", EVENT_MODELS[kind].validate_python(
                    {"type": "emptied", "ts": ts + k})) for k in range(rng.randint(1, 2))]
                out.append((ts, events))
    out.sort(key=lambda pair: pair[0])
    return [items for _, items in out]


def run(seed: int, together: bool) -> tuple[list[Alert], DetectStage]:
    stage = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    alerts: list[Alert] = []
    rng = random.Random(seed)
    for msg in messages(seed):
        if together:
            alerts += stage.observe_many(msg)
        else:
            for one in msg:
                alerts += stage.observe(one)
        if rng.random() < 0.1:
            alerts += stage.tick(msg[-1].ts_ms + 15 * MIN)   # opens device_silent
    return alerts, stage


@pytest.mark.parametrize("seed", range(4))
def test_a_message_taken_together_is_its_readings_one_by_one(seed: int) -> None:
    together, a = run(seed, together=True)
    apart, b = run(seed, together=False)
    assert together == apart
    rules = {alert.rule for alert in together}
    # The run crossed most rules' bounds both ways, and the statistical detector's warm-up.
    assert {"lamp_dark", "lamp_day_burning", "lamp_power", "counter_backwards", "bin_full",
            "bin_fire_risk", "battery_low", "value_stuck", "water_quality",
            "device_silent", "device_offline"} <= rules, rules
    assert {alert.state for alert in together} == {"raised", "cleared"}
    assert a._state == b._state and a._seen == b._seen
    assert a.book.open == b.book.open
    assert a.statistical_states(["inlet", "quality", "tank"]) == \
        b.statistical_states(["inlet", "quality", "tank"])
    assert a.statistical_states(["inlet"])    # past its warm-up: a state to compare
