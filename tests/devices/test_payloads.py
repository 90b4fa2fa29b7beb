"""Every kind of CONTRACT section 2 at every range edge, and its events."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from devices.payloads import EVENT_MODELS, EVENT_TYPES, KINDS, TELEMETRY_MODELS
from devices.schema import FIELDS

# Written out from CONTRACT.md section 2, independently of the models under test.
# (low, high); high None means no upper bound; "bool" means a boolean field.
CONTRACT: dict[str, dict[str, tuple[float, float | None] | str]] = {
    "streetlight": {"on": "bool", "dim_pct": (0, 100), "power_w": (0, 2000),
                    "voltage_v": (0, 400), "current_a": (0, 20), "energy_kwh": (0, None),
                    "lux": (0, 200000), "temp_c": (-40, 125)},
    "waste_bin": {"fill_pct": (0, 100), "weight_kg": (0, 2000), "temp_c": (-40, 150),
                  "battery_pct": (0, 100), "lid_open": "bool"},
    "water_meter": {"flow_m3h": (0, 1000), "total_m3": (0, None), "pressure_kpa": (0, 2500),
                    "temp_c": (-10, 90)},
    "water_quality": {"turbidity_ntu": (0, 4000), "chlorine_mg_l": (0, 20), "ph": (0, 14),
                      "conductivity_us_cm": (0, 20000), "temp_c": (-10, 90)},
    "water_level": {"level_m": (0, 50), "level_pct": (0, 100)},
    "door": {"open": "bool", "battery_pct": (0, 100)},
    "smoke": {"smoke_db_m": (0, 100), "alarm": "bool", "battery_pct": (0, 100),
              "temp_c": (-40, 150)},
    "intrusion": {"armed": "bool", "battery_pct": (0, 100)},
    "camera": {"recording": "bool", "storage_pct": (0, 100)},
}

NUMERIC = [(k, f, r) for k, fields in CONTRACT.items() for f, r in fields.items() if r != "bool"]
BOOLEAN = [(k, f) for k, fields in CONTRACT.items() for f, r in fields.items() if r == "bool"]


def accepts(kind: str, obj: dict) -> bool:
    try:
        TELEMETRY_MODELS[kind].model_validate(obj)
    except ValidationError:
        return False
    return True


def test_the_models_have_exactly_the_contract_fields() -> None:
    assert set(KINDS) == set(CONTRACT)
    for kind in KINDS:
        assert set(FIELDS[kind]) == set(CONTRACT[kind]), kind


@pytest.mark.parametrize(("kind", "field", "bounds"), NUMERIC)
def test_numeric_range_edges(kind: str, field: str, bounds: tuple[float, float | None]) -> None:
    low, high = bounds
    assert accepts(kind, {field: low})
    assert accepts(kind, {field: float(low)})
    assert not accepts(kind, {field: low - 1e-9}), "below the range is rejected, not clipped"
    if high is None:
        assert accepts(kind, {field: 1e12})
    else:
        assert accepts(kind, {field: high})
        assert not accepts(kind, {field: high + 1e-9})
        assert accepts(kind, {field: (low + high) / 2})
    assert not accepts(kind, {field: True}), "a boolean is not a number"
    assert not accepts(kind, {field: "1"}), "text is not a number"
    assert not accepts(kind, {field: math.nan})
    assert not accepts(kind, {field: math.inf})


@pytest.mark.parametrize(("kind", "field"), BOOLEAN)
def test_boolean_fields(kind: str, field: str) -> None:
    assert accepts(kind, {field: True})
    assert accepts(kind, {field: False})
    assert not accepts(kind, {field: 1})
    assert not accepts(kind, {field: "true"})


def test_readings_are_floats_even_when_sent_as_integers() -> None:
    model = TELEMETRY_MODELS["waste_bin"].model_validate({"fill_pct": 50})
    assert isinstance(model.fill_pct, float)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS)
def test_an_object_without_readings_or_with_unknown_fields_is_refused(kind: str) -> None:
    assert not accepts(kind, {})
    assert not accepts(kind, {"ts": 1_700_000_000_000, "seq": 3})
    assert not accepts(kind, {"no_such_field": 1.0})


def test_timestamps_in_milliseconds_or_rfc3339() -> None:
    model = TELEMETRY_MODELS["door"]
    assert model.model_validate({"open": True, "ts": 1_700_000_000_123}).ts == 1_700_000_000_123
    assert model.model_validate({"open": True, "ts": "2023-11-14T22:13:20.123Z"}).ts == \
        1_700_000_000_123
    assert model.model_validate({"open": True, "ts": "2023-11-15T06:13:20+08:00"}).ts == \
        1_700_000_000_000
    for bad in ("2023-11-14T22:13:20", "yesterday", True, 1.5e12):
        assert not accepts("door", {"open": True, "ts": bad}), bad


def test_seq_and_device_are_optional_envelope_fields() -> None:
    obj = TELEMETRY_MODELS["door"].model_validate({"open": False, "seq": 7, "device": "d-1"})
    assert (obj.seq, obj.device) == (7, "d-1")
    assert not accepts("door", {"open": False, "seq": -1})


@pytest.mark.parametrize(("kind", "event_type"),
                         [(k, t) for k, types in EVENT_TYPES.items() for t in types])
def test_every_event_type_is_accepted(kind: str, event_type: str) -> None:
    extra = {"fault": {"code": "E12"}, "access": {"result": "denied", "method": "face"}}
    event = EVENT_MODELS[kind].validate_python({"type": event_type, **extra.get(event_type, {})})
    assert event.type == event_type


def test_event_rules() -> None:
    door = EVENT_MODELS["door"]
    with pytest.raises(ValidationError, match="result"):
        door.validate_python({"type": "access", "method": "card"})
    with pytest.raises(ValidationError):
        door.validate_python({"type": "access", "result": "maybe", "method": "card"})
    with pytest.raises(ValidationError):
        door.validate_python({"type": "alarm"})  # a smoke event, not a door's
    with pytest.raises(ValidationError):
        EVENT_MODELS["streetlight"].validate_python({"type": "fault"})  # code is required
    assert EVENT_MODELS["streetlight"].validate_python({"type": "fault", "code": 12}).code == "12"
    assert set(EVENT_MODELS) == set(EVENT_TYPES)
    assert not {"water_meter", "water_quality", "water_level"} & set(EVENT_MODELS)
