"""What devices say: one pydantic model per kind for telemetry, one union per kind for events.

The ranges are CONTRACT section 2. A value outside its range is rejected with the reason,
never clipped. Models are strict (``true`` is not a number, ``"5"`` is not a number) and
forbid unknown fields, because InfluxDB fixes a field's type on first write: a field we
have not agreed on could poison a measurement forever.
"""

from __future__ import annotations

import functools
from datetime import datetime
from types import NoneType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    create_model,
    field_validator,
    model_validator,
)

KINDS = (
    "streetlight",
    "waste_bin",
    "water_meter",
    "water_quality",
    "water_level",
    "door",
    "smoke",
    "intrusion",
    "camera",
)

FAMILY = {
    "streetlight": "lighting",
    "waste_bin": "waste",
    "water_meter": "water",
    "water_quality": "water",
    "water_level": "water",
    "door": "security",
    "smoke": "security",
    "intrusion": "security",
    "camera": "security",
}

#: Fields every object may carry besides the readings themselves.
ENVELOPE_FIELDS = frozenset({"ts", "seq", "device"})


def _rng(lo: float, hi: float | None = None) -> Any:
    """Constrain a float to ``[lo, hi]`` (no upper bound when ``hi`` is None), finite."""
    return Field(ge=lo, le=hi, allow_inf_nan=False)


def _ts_to_ms(value: Any) -> Any:
    """Epoch milliseconds stay as they are; RFC 3339 text becomes epoch milliseconds.

    Text without a UTC offset is refused: guessing the zone of a sensor's clock is how
    readings end up eight hours off.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("ts is not RFC 3339 text") from exc
        if parsed.tzinfo is None:
            raise ValueError("ts text has no UTC offset")
        return int(parsed.timestamp() * 1000)
    return value


class Envelope(BaseModel):
    """The part of every telemetry and event object that is not a reading."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    ts: int | None = None
    # At most 2**64 - 1: a device's counter is no wider, and past it JSON parsers part ways
    # (orjson reads a float, pydantic's an integer).
    seq: Annotated[int, Field(ge=0, le=2**64 - 1)] | None = None
    device: str | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> Any:
        return _ts_to_ms(value)


class Telemetry(Envelope):
    """Base of the per-kind telemetry models: at least one reading must be present."""

    @model_validator(mode="after")
    def _has_a_reading(self) -> Telemetry:
        if not has_a_reading(self.__dict__, reading_fields(type(self))):
            raise ValueError("no reading field in the object")
        return self


def has_a_reading(values: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether one of the reading fields ``names`` of a telemetry object's ``values`` is set
    (the models' rule; the decoder's fast path asks it too)."""
    for name in names:  # noqa: SIM110 (any() over a generator costs twice this loop)
        if values[name] is not None:
            return True
    return False


class StreetlightTelemetry(Telemetry):
    on: bool | None = None
    dim_pct: Annotated[float, _rng(0, 100)] | None = None
    power_w: Annotated[float, _rng(0, 2000)] | None = None
    voltage_v: Annotated[float, _rng(0, 400)] | None = None
    current_a: Annotated[float, _rng(0, 20)] | None = None
    energy_kwh: Annotated[float, _rng(0)] | None = None
    lux: Annotated[float, _rng(0, 200000)] | None = None
    temp_c: Annotated[float, _rng(-40, 125)] | None = None


class WasteBinTelemetry(Telemetry):
    fill_pct: Annotated[float, _rng(0, 100)] | None = None
    weight_kg: Annotated[float, _rng(0, 2000)] | None = None
    temp_c: Annotated[float, _rng(-40, 150)] | None = None
    battery_pct: Annotated[float, _rng(0, 100)] | None = None
    lid_open: bool | None = None


class WaterMeterTelemetry(Telemetry):
    flow_m3h: Annotated[float, _rng(0, 1000)] | None = None
    total_m3: Annotated[float, _rng(0)] | None = None
    pressure_kpa: Annotated[float, _rng(0, 2500)] | None = None
    temp_c: Annotated[float, _rng(-10, 90)] | None = None


class WaterQualityTelemetry(Telemetry):
    turbidity_ntu: Annotated[float, _rng(0, 4000)] | None = None
    chlorine_mg_l: Annotated[float, _rng(0, 20)] | None = None
    ph: Annotated[float, _rng(0, 14)] | None = None
    conductivity_us_cm: Annotated[float, _rng(0, 20000)] | None = None
    temp_c: Annotated[float, _rng(-10, 90)] | None = None


class WaterLevelTelemetry(Telemetry):
    level_m: Annotated[float, _rng(0, 50)] | None = None
    level_pct: Annotated[float, _rng(0, 100)] | None = None


class DoorTelemetry(Telemetry):
    open: bool | None = None
    battery_pct: Annotated[float, _rng(0, 100)] | None = None


class SmokeTelemetry(Telemetry):
    smoke_db_m: Annotated[float, _rng(0, 100)] | None = None
    alarm: bool | None = None
    battery_pct: Annotated[float, _rng(0, 100)] | None = None
    temp_c: Annotated[float, _rng(-40, 150)] | None = None


class IntrusionTelemetry(Telemetry):
    armed: bool | None = None
    battery_pct: Annotated[float, _rng(0, 100)] | None = None


class CameraTelemetry(Telemetry):
    recording: bool | None = None
    storage_pct: Annotated[float, _rng(0, 100)] | None = None


TELEMETRY_MODELS: dict[str, type[Telemetry]] = {
    "streetlight": StreetlightTelemetry,
    "waste_bin": WasteBinTelemetry,
    "water_meter": WaterMeterTelemetry,
    "water_quality": WaterQualityTelemetry,
    "water_level": WaterLevelTelemetry,
    "door": DoorTelemetry,
    "smoke": SmokeTelemetry,
    "intrusion": IntrusionTelemetry,
    "camera": CameraTelemetry,
}


@functools.cache
def reading_fields(model: type[Telemetry]) -> tuple[str, ...]:
    """The reading field names of a telemetry model, in declaration order."""
    return tuple(name for name in model.model_fields if name not in ENVELOPE_FIELDS)


def reading_types(model: type[Telemetry]) -> tuple[tuple[str, type], ...]:
    """Each reading field of a telemetry model with the type a validated reading holds in
    it (strict models: a bool is a bool, a number a float), in declaration order.

    Raises:
        TypeError: a field of another type (the line writer would need to learn it).
    """
    out = []
    for name in reading_fields(model):
        # X | None, X possibly Annotated[X, constraints]: X.
        args = [a for a in get_args(model.model_fields[name].annotation) if a is not NoneType]
        base = args[0] if len(args) == 1 else None
        if get_origin(base) is Annotated:
            base = get_args(base)[0]
        if base not in (bool, float):
            raise TypeError(f"{model.__name__}.{name}: a reading field must be a bool or a "
                            f"float, not {model.model_fields[name].annotation}")
        out.append((name, base))
    return tuple(out)


# --- events -------------------------------------------------------------------------------


class Event(Envelope):
    """Base of every event: ``type`` says what happened; ``value`` is an optional number."""

    type: str
    value: Annotated[float, _rng(-1e15, 1e15)] | None = None


class FaultEvent(Event):
    """A streetlight's driver or lamp reports a fault code (text or number, kept as text)."""

    type: Literal["fault"]
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")] | int

    @field_validator("code", mode="after")
    @classmethod
    def _code_as_text(cls, value: str | int) -> str:
        # One fixed type per field in InfluxDB: codes are always stored as text.
        return str(value)


class AccessEvent(Event):
    """A door's access controller decided on a request."""

    type: Literal["access"]
    result: Literal["granted", "denied"]
    method: Literal["card", "face", "code", "app"]


def _plain_events(kind: str, *types: str) -> Any:
    """An event model for types that carry nothing beyond the envelope and ``value``."""
    name = "".join(part.title() for part in kind.split("_")) + "Event"
    return create_model(name, __base__=Event, type=(Literal[types], ...))  # type: ignore[arg-type]


EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "streetlight": ("fault",),
    "waste_bin": ("emptied",),
    "door": ("access", "forced", "held_open"),
    "smoke": ("alarm", "test", "tamper"),
    "intrusion": ("motion", "intrusion", "tamper"),
    "camera": ("tamper", "video_loss"),
}

_TYPED_EVENTS: dict[str, type[Event]] = {"fault": FaultEvent, "access": AccessEvent}


def _event_adapter(kind: str, types: tuple[str, ...]) -> TypeAdapter[Any]:
    """One validator per kind: a discriminated union on ``type`` over its event types."""
    members: list[Any] = [_TYPED_EVENTS[t] for t in types if t in _TYPED_EVENTS]
    plain = tuple(t for t in types if t not in _TYPED_EVENTS)
    if plain:
        members.append(_plain_events(kind, *plain))
    if len(members) == 1:
        return TypeAdapter(members[0])
    union: Any = Union[tuple(members)]  # noqa: UP007 - built from a runtime list
    return TypeAdapter(Annotated[union, Field(discriminator="type")])


EVENT_MODELS: dict[str, TypeAdapter[Any]] = {
    kind: _event_adapter(kind, types) for kind, types in EVENT_TYPES.items()
}
