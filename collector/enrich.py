"""Enrich: a decoded object + the registry -> its InfluxDB line, or a Reject.

The registry is the authority on where a device is and what it is: a topic that names
another community or kind than the registry does is refused, not corrected.
"""

from __future__ import annotations

from collector.decode import Decoded, object_bytes
from collector.errors import Rejected
from collector.records import Reject
from collector.sink.lineprotocol import ReadingWriter, encode, reading_writer, series
from devices import schema
from devices.payloads import TELEMETRY_MODELS, Event, Telemetry, reading_types
from devices.registry import Device, Registry
from devices.schema import Point

#: Each kind's reading line writer.
WRITERS: dict[str, ReadingWriter] = {
    kind: reading_writer(reading_types(model)) for kind, model in TELEMETRY_MODELS.items()}


class Enricher:
    """Looks devices up in the registry and writes lines with their tags."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        # A reading's measurement and tags depend only on its device: escaped and encoded
        # once per device (about 100 bytes each; a device the registry drops keeps its entry).
        self._series: dict[str, bytes] = {}

    def knows(self, device_id: str) -> bool:
        """True when the registry has this device."""
        return self._registry.device(device_id) is not None

    def enrich(self, item: Decoded, topic: str, received_ms: int) -> bytes | Reject:
        """The line to write for ``item``, or the reason it is refused."""
        try:
            device = self._device(item)
        except Rejected as exc:
            payload = object_bytes(item.obj)
            return Reject(topic, payload, exc.reason, exc.detail, received_ms)
        if item.online is not None:
            return encode(_status_point(device, item))
        if isinstance(item.body, Telemetry):
            return WRITERS[device.kind](self._head(device), item.body.__dict__, item.ts_ms)
        assert isinstance(item.body, Event)
        return encode(_event_point(device, item.body, item.ts_ms))

    def enrich_many(self, items: list[Decoded], topic: str, received_ms: int,
                    rejects: list[Reject]) -> tuple[list[Decoded], list[bytes]]:
        """One message's objects: those accepted and their lines; each refusal is added to
        ``rejects``. What :meth:`enrich` gives object by object, with the device looked up
        and its series found once per topic (an array's fifty readings share theirs)."""
        accepted: list[Decoded] = []
        lines: list[bytes] = []
        where = None
        known: tuple[bytes, ReadingWriter] | None = None   # the device's series and writer
        for item in items:
            body = item.body
            if item.online is not None or not isinstance(body, Telemetry):
                out = self.enrich(item, topic, received_ms)
                if isinstance(out, Reject):
                    rejects.append(out)
                else:
                    lines.append(out)
                    accepted.append(item)
                continue
            if item.where is not where:
                where = item.where
                try:
                    device = self._device(item)
                except Rejected:
                    known = None
                else:
                    known = (self._head(device), WRITERS[device.kind])
            if known is None:
                out = self.enrich(item, topic, received_ms)   # the refusal, with its reason
                assert isinstance(out, Reject)
                rejects.append(out)
                continue
            head, write = known
            lines.append(write(head, body.__dict__, item.ts_ms))
            accepted.append(item)
        return accepted, lines

    def _head(self, device: Device) -> bytes:
        head = self._series.get(device.id)
        if head is None:
            head = self._series[device.id] = series(schema.measurement(device.kind),
                                                    _reading_tags(device)).encode()
        return head

    def _device(self, item: Decoded) -> Device:
        where = item.where
        device = self._registry.device(where.device)
        if device is None:
            raise Rejected("unknown_device", f"device {where.device!r} is not in the registry")
        if device.community.id != where.community:
            raise Rejected("community_mismatch", f"topic says community {where.community!r}, "
                           f"the registry says {device.community.id!r}")
        if device.kind != where.kind:
            raise Rejected("kind_mismatch",
                           f"topic says kind {where.kind!r}, the registry says {device.kind!r}")
        return device


def _reading_tags(device: Device) -> tuple[tuple[str, str], ...]:
    tags = [(schema.CITY, device.community.city), (schema.COMMUNITY, device.community.id),
            (schema.DEVICE, device.id), (schema.DISTRICT, device.community.district)]
    if device.kind_tag:
        tags.append(device.kind_tag)
    return tuple(sorted(tags))


def _event_point(device: Device, body: Event, ts_ms: int) -> Point:
    tags = ((schema.CITY, device.community.city), (schema.COMMUNITY, device.community.id),
            (schema.DEVICE, device.id), (schema.KIND, device.kind), (schema.TYPE, body.type))
    fields: list[tuple[str, schema.FieldValue]] = [(schema.EVENT_COUNT_FIELD, 1)]
    for name in schema.EVENT_VALUE_FIELDS:
        value = getattr(body, name, None)
        if value is not None:
            fields.append((name, value))
    return Point(schema.EVENT, tags, tuple(fields), ts_ms)


def _status_point(device: Device, item: Decoded) -> Point:
    tags = ((schema.CITY, device.community.city), (schema.COMMUNITY, device.community.id),
            (schema.DEVICE, device.id), (schema.KIND, device.kind))
    reason = "reported online" if item.online else "reported offline (or its last will)"
    fields: tuple[tuple[str, schema.FieldValue], ...] = (
        (schema.STATUS_ONLINE, bool(item.online)), (schema.STATUS_REASON, reason))
    if device.lat is not None and device.lon is not None:
        fields += ((schema.STATUS_LAT, device.lat), (schema.STATUS_LON, device.lon))
    return Point(schema.DEVICE_STATUS, tags, fields, item.ts_ms)
