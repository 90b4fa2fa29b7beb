"""Decode: bytes -> validated pydantic objects, one per reading or event, or a Reject each.

Pure and synchronous. A payload is one JSON object or an array of objects; in an array the
good objects go on and each bad one is refused with its own reason. An array of readings is
validated as one list first (one pydantic call instead of one per object, several times
faster); only when something in it is bad is it taken object by object, so each bad object
gets its own reason and the good ones still go on.

Readings take a fast path first: the payload's bytes validated straight by the kind's model
(pydantic's own JSON parser: no dict or list of Python objects built only to be validated;
the model's schema less its two Python validators, whose checks are made inline).
It is taken only when every object in the message is accepted; anything else (a bad field,
a bad stamp, JSON the fast path does not take) goes through the general path again, which
says what is wrong. Both accept the same payloads with the same values: a property test
(``tests/collector/test_decode_fast.py``) compares them on generated payloads of every kind.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from collector.errors import Rejected
from collector.records import Inbound, Reject
from collector.settings import ValidationSettings
from devices import topics
from devices.payloads import (
    EVENT_MODELS,
    TELEMETRY_MODELS,
    Envelope,
    Telemetry,
    has_a_reading,
    reading_fields,
)
from devices.topics import DeviceTopic

STATUS_VALUES = {"online": True, "offline": False}



def _list_of(model: type[Telemetry]) -> TypeAdapter[list[Telemetry]]:
    # The models themselves validate each item: the same checks, one call for the array.
    return TypeAdapter(list[model])  # type: ignore[valid-type]


#: Each kind's readings as one list, for arrays.
LIST_ADAPTERS = {kind: _list_of(model) for kind, model in TELEMETRY_MODELS.items()}


def _declarative(schema: Any) -> Any:
    """A model's pydantic-core schema without its Python validators, for the fast path.

    The telemetry models have two: ``Envelope._parse_ts`` (before ``ts``: RFC 3339 text to
    milliseconds) and ``Telemetry._has_a_reading`` (after the model). Each costs a call into
    Python per reading, 0.16 µs of a lit streetlight's 1.4 in an array. Without them the
    schema still checks every type, range and unknown key, and what they decide is decided
    in :meth:`Decoder._accept_all`: a stamp as text fails the strict integer left in its
    place (the general path then reads it through the model), and a reading must be present
    (a reading field that is not None). Any other Python validator stops the collector at
    import, not silently skipped. The property test (``tests/collector/test_decode_fast.py``)
    holds both paths to the same answers."""
    if isinstance(schema, list):
        return [_declarative(part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind in ("function-before", "function-after"):
        name = getattr(schema["function"]["function"], "__name__", "")
        if name not in ("_parse_ts", "_has_a_reading"):
            raise TypeError(f"the fast path does not know the validator {name!r}")
        return _declarative(schema["schema"])
    if isinstance(kind, str) and kind.startswith("function"):
        raise TypeError(f"the fast path does not know a {kind} validator")
    return {key: _declarative(value) for key, value in schema.items()}


#: Each kind's reading fields (one of them must be set: ``has_a_reading``).
READING_FIELDS = {kind: reading_fields(model) for kind, model in TELEMETRY_MODELS.items()}


#: Each kind's model without its Python validators (see _declarative), alone and as a list;
#: called directly, without ``model_validate_json``'s Python wrapper (0.23 µs a reading).
#: What they give are the models' own instances.
VALIDATORS = {kind: SchemaValidator(_declarative(model.__pydantic_core_schema__))
              for kind, model in TELEMETRY_MODELS.items()}
LIST_VALIDATORS = {kind: SchemaValidator({"type": "list", "items_schema": _declarative(
    model.__pydantic_core_schema__)}) for kind, model in TELEMETRY_MODELS.items()}


@functools.lru_cache(maxsize=4)
def _items(payload: bytes) -> list[Any]:
    # The objects of an array refused one by one share one parse (an unknown device's
    # array of 50 would otherwise be parsed 50 times).
    items: list[Any] = orjson.loads(payload)
    return items


def object_bytes(obj: Any) -> bytes:
    """An accepted object (``Decoded.obj``) as the bytes a refusal keeps. The fast path
    leaves the object unparsed: the message's bytes when the message is the object, or
    (those bytes, its index) in an array; it is parsed only when a later stage refuses it
    (enrich: a device the registry does not know), which is rare. Parsed JSON is never
    bytes or a tuple."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, tuple):
        payload, index = obj
        return orjson.dumps(_items(payload)[index])
    return orjson.dumps(obj)


# Not frozen, for speed: see ``collector.records.Inbound``.
@dataclass(slots=True)
class Decoded:
    """One accepted object: a telemetry reading, an event, or a status change.

    ``body`` is the validated model (None for status); ``online`` is set for status only;
    ``obj`` is the JSON value it came from (from the fast path: unparsed, see
    :func:`object_bytes`), kept so a later stage can dead-letter it alone.
    ``unstamped``: it carried no ``ts`` (status never does); ``ts_ms`` is then the receive
    time until the pipeline gives it a stamp of its own (``collector/stamps.py``), which is
    ``moved`` when later than the receive time.
    """

    where: DeviceTopic
    body: Envelope | None
    ts_ms: int
    online: bool | None
    obj: Any
    unstamped: bool = False
    moved: bool = False


#: The first byte of a JSON object and of an array.
OPEN_OBJECT, OPEN_ARRAY = ord("{"), ord("[")

#: Parsed topics kept (about 300 bytes each).
TOPIC_CACHE = 200_000


class Decoder:
    """Turns :class:`Inbound` messages into :class:`Decoded` objects and :class:`Reject` s."""

    def __init__(self, settings: ValidationSettings, topic_root: str, fast: bool = True) -> None:
        self._settings = settings
        #: Readings through the fast path first (False: the general path alone, which the
        #: property test compares it with).
        self._fast = fast
        self._root = topic_root
        self._max_age_ms = int(settings.max_age_days * 86_400_000)
        self._max_future_ms = int(settings.max_future_s * 1000)
        # Topics parsed before: a device sends on the same few topics for ever. Bounded: past
        # TOPIC_CACHE entries it starts afresh (a fleet bigger than that parses some twice).
        self._topics: dict[str, topics.DeviceTopic] = {}

    def decode(self, msg: Inbound) -> tuple[list[Decoded], list[Reject]]:
        """Decode one message into accepted objects and refusals."""
        try:
            where = self._where(msg)
            if self._fast and where.channel == "telemetry":
                every = self._accept_all(where, msg)
                if every is not None:
                    return every, []
            objects, in_array = self._open(where, msg)
        except Rejected as exc:
            payload = msg.payload[: self._settings.max_payload_bytes]
            return [], [Reject(msg.topic, payload, exc.reason, exc.detail, msg.received_ms)]
        accepted: list[Decoded] = []
        rejects: list[Reject] = []
        bodies = self._as_list(where, objects) if in_array else None
        for k, obj in enumerate(objects):
            try:
                accepted.append(self._one(where, obj, msg.received_ms, in_array,
                                          bodies[k] if bodies is not None else None))
            except Rejected as exc:
                raw = msg.payload if len(objects) == 1 else orjson.dumps(obj)
                rejects.append(Reject(msg.topic, raw, exc.reason, exc.detail, msg.received_ms))
        return accepted, rejects

    def _where(self, msg: Inbound) -> DeviceTopic:
        """The message's topic, parsed (once per topic), if its size is within the limit."""
        size, limit = len(msg.payload), self._settings.max_payload_bytes
        if size > limit:
            raise Rejected("too_large", f"payload of {size} bytes is over the {limit}-byte limit")
        where = self._topics.get(msg.topic)
        if where is None:
            try:
                where = topics.parse(msg.topic, self._root)
            except topics.TopicError as exc:
                raise Rejected("bad_topic", str(exc)) from exc
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[msg.topic] = where
        return where

    def _accept_all(self, where: DeviceTopic, msg: Inbound) -> list[Decoded] | None:
        """The fast path: every reading of the message validated from its bytes and
        accepted, or None when anything in it is not (the general path then says what)."""
        payload = msg.payload
        first = payload[0] if payload else 0
        received_ms, device = msg.received_ms, where.device
        low, high = received_ms - self._max_age_ms, received_ms + self._max_future_ms
        try:
            if first == OPEN_OBJECT:
                body = VALIDATORS[where.kind].validate_json(payload)
                if len(body.__pydantic_fields_set__) != payload.count(b":"):
                    return None     # see _as_orjson_reads, here inline
                if body.ts is None and has_a_reading(body.__dict__, READING_FIELDS[where.kind]):
                    return [self._one(where, payload, received_ms, False, body)]
                bodies = [body]
            elif first == OPEN_ARRAY:
                bodies = LIST_VALIDATORS[where.kind].validate_json(payload)
                if not bodies or not _as_orjson_reads(payload, bodies):
                    return None
            else:
                return None
        except (ValidationError, Rejected):
            return None
        # _one's checks and the model's reading check, inline (a loop's worth of calls saved
        # per message); any item they would refuse sends the whole message down the
        # general path, whose refusal names the item and the reason.
        obj = payload if first == OPEN_OBJECT else None
        readings = READING_FIELDS[where.kind]
        out = []
        for k, body in enumerate(bodies):
            ts_ms = body.ts
            if ts_ms is None or not low <= ts_ms <= high or \
                    (body.device is not None and body.device != device):
                return None
            values = body.__dict__
            for name in readings:   # has_a_reading, inline: it runs for every reading
                if values[name] is not None:
                    break
            else:
                return None
            out.append(Decoded(where, body, ts_ms, None, obj or (payload, k)))
        return out

    def _open(self, where: DeviceTopic, msg: Inbound) -> tuple[list[Any], bool]:
        """The objects, and whether they came as an array."""
        if where.channel == "status":
            return [_status_text(msg.payload)], False
        try:
            value = orjson.loads(msg.payload)
        except orjson.JSONDecodeError as exc:
            raise Rejected("bad_json", f"not JSON: {exc}") from exc
        if isinstance(value, dict):
            return [value], False
        if isinstance(value, list) and value:
            return value, True
        raise Rejected("bad_json", "payload must be a JSON object or a non-empty array of objects")

    @staticmethod
    def _as_list(where: DeviceTopic, objects: list[Any]) -> list[Any] | None:
        """An array of readings validated in one call, or None when any item is bad (then
        each is validated alone, for its own reason)."""
        adapter = LIST_ADAPTERS.get(where.kind) if where.channel == "telemetry" else None
        if adapter is None:
            return None
        try:
            return adapter.validate_python(objects)
        except ValidationError:
            return None

    def _one(self, where: DeviceTopic, obj: Any, received_ms: int, in_array: bool,
             body: Envelope | None = None) -> Decoded:
        if where.channel == "status":
            return Decoded(where, None, received_ms, STATUS_VALUES[obj], obj, unstamped=True)
        if body is None:
            if not isinstance(obj, dict):
                raise Rejected("bad_json", f"array item is {type(obj).__name__}, not an object")
            body = self._validate(where, obj)
        if body.device is not None and body.device != where.device:
            raise Rejected("device_mismatch",
                           f"payload device {body.device!r} is not the topic's {where.device!r}")
        if body.ts is None:
            if in_array:
                # An array is a flush of buffered readings: only the device knows when each
                # was taken, and one receive time for all of them would be a lie.
                raise Rejected("invalid", "an array item needs ts")
            return Decoded(where, body, received_ms, None, obj, unstamped=True)
        ts_ms = body.ts
        if ts_ms > received_ms + self._max_future_ms:
            ahead = (ts_ms - received_ms) / 1000
            raise Rejected("ts_future", f"ts is {ahead:.0f} s ahead of the collector's clock")
        if ts_ms < received_ms - self._max_age_ms:
            days = (received_ms - ts_ms) / 86_400_000
            raise Rejected("ts_too_old", f"ts is {days:.1f} days old, over the "
                           f"{self._settings.max_age_days:g}-day limit")
        return Decoded(where, body, ts_ms, None, obj)

    @staticmethod
    def _validate(where: DeviceTopic, obj: dict[str, Any]) -> Envelope:
        try:
            if where.channel == "telemetry":
                return TELEMETRY_MODELS[where.kind].model_validate(obj)
            adapter = EVENT_MODELS.get(where.kind)
            if adapter is None:
                raise Rejected("invalid", f"kind {where.kind!r} has no events")
            event: Envelope = adapter.validate_python(obj)
            return event
        except ValidationError as exc:
            raise Rejected("invalid", explain(exc, union_tag=obj.get("type"))) from exc


def explain(exc: ValidationError, union_tag: Any = None) -> str:
    """A one-line account of a validation failure, naming each field and the reason.

    ``union_tag`` is the event's ``type``, which pydantic puts in front of the field name.
    """
    parts = []
    for err in exc.errors(include_url=False):
        loc_parts = list(err["loc"])
        if loc_parts and union_tag is not None and loc_parts[0] == union_tag:
            loc_parts = loc_parts[1:]
        loc = ".".join(str(p) for p in loc_parts)
        field = f"field {loc!r}: " if loc else ""
        got = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {err['input']!r})"
        if err["type"] == "extra_forbidden":
            parts.append(f"{field}unknown field")
        else:
            parts.append(f"{field}{err['msg']}{got}")
    return "; ".join(parts)


def _as_orjson_reads(payload: bytes, bodies: Sequence[Telemetry]) -> bool:
    """True when the general path reads the same values from ``payload`` as the fast path
    did. The two parsers differ in what they take, not in what they make of what both take:
    pydantic's reads NaN, Infinity and numbers past a double as floats, which the models
    refuse, unless a later copy of the same key hid them, where orjson refuses the payload.
    So every key must be given once: as many keys set as colons in the payload (each key has
    one; a colon in a text, as in an RFC 3339 stamp, only sends a good payload the general
    way). Integers past 64 bits, which the two read differently, are past ``seq``'s bound."""
    return sum(map(len, map(_FIELDS_SET, bodies))) == payload.count(b":")


#: The keys an object gave (pydantic's own record of them).
_FIELDS_SET = operator.attrgetter("__pydantic_fields_set__")


def _status_text(payload: bytes) -> str:
    text = payload.strip().strip(b'"').decode("utf-8", "replace").lower()
    if text not in STATUS_VALUES:
        raise Rejected("invalid", f"status must be 'online' or 'offline', got {text[:40]!r}")
    return text
