"""Alerts: a rule's verdict over time becomes raised and cleared alerts, one open at a time.

Rules say, reading by reading, whether their condition holds (a :class:`Verdict`). The book
turns that into transitions: raised when a condition starts to hold, cleared when it stops;
an open alert is not raised again. Hysteresis lives in the rules (each knows whether its
alert is open and uses a looser bound to clear it). The open alerts are saved to
``<storage.dir>/alerts.json`` by :meth:`AlertBook.save` (the collector calls it every few
seconds when something changed, and at shutdown), for ``sct alerts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import orjson

from collector.files import set_aside, write_atomic
from devices import schema
from devices.registry import Device
from devices.schema import Point
from devices.topics import alert_topic

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")


class Verdict(NamedTuple):
    """What a rule found in one reading."""

    rule: str
    active: bool
    severity: str = "warning"
    value: float = 0.0
    message: str = ""
    score: float = 1.0


class Subject(NamedTuple):
    """What an alert is about: a registered device, or the collector itself."""

    device: str
    kind: str
    community: str = ""
    city: str = ""

    @classmethod
    def of(cls, device: Device) -> Subject:
        return cls(device.id, device.kind, device.community.id, device.community.city)


@dataclass(frozen=True, slots=True)
class Alert:
    """One transition of one alert."""

    rule: str
    state: str  # "raised" or "cleared"
    severity: str
    device: str
    kind: str
    community: str
    city: str
    value: float
    score: float
    message: str
    ts_ms: int

    def point(self) -> Point:
        tags = ((schema.CITY, self.city), (schema.COMMUNITY, self.community),
                (schema.DEVICE, self.device), (schema.KIND, self.kind), ("rule", self.rule),
                ("severity", self.severity))
        fields = (("state", self.state), ("value", float(self.value)),
                  ("score", float(self.score)), ("message", self.message))
        return Point(schema.ALERT, tags, fields, self.ts_ms)

    def topic(self, root: str) -> str:
        return alert_topic(self.community, self.kind, self.device, root)

    def payload(self) -> bytes:
        # orjson serialises the dataclass itself: json.dumps(asdict(...)) deep-copied every
        # field first and was 2 % of a live fleet's collector CPU (issue 15's profile).
        return orjson.dumps(self)


_NONE: frozenset[str] = frozenset()


class AlertBook:
    """The open alerts, by (device, rule)."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._open: dict[tuple[str, str], Alert] = {}
        # The same, as each device's set of open rules: what the rules ask of every reading
        # ("is my alert open?") is then one set lookup.
        self._rules: dict[str, set[str]] = {}
        self._changed = False

    def is_open(self, device: str, rule: str) -> bool:
        return (device, rule) in self._open

    def rules_open(self, device: str) -> Container[str]:
        """The rules whose alert is open for ``device`` (live: it follows the book)."""
        return self._rules.get(device, _NONE)

    def _opened(self, alert: Alert) -> None:
        self._open[(alert.device, alert.rule)] = alert
        self._rules.setdefault(alert.device, set()).add(alert.rule)

    def _closed(self, device: str, rule: str) -> None:
        del self._open[(device, rule)]
        rules = self._rules[device]
        rules.discard(rule)
        if not rules:
            del self._rules[device]

    @property
    def open(self) -> list[Alert]:
        return sorted(self._open.values(), key=lambda a: a.ts_ms)

    def observe(self, subject: Subject, verdict: Verdict, ts_ms: int) -> Alert | None:
        """The transition this verdict causes, if any."""
        key = (subject.device, verdict.rule)
        if verdict.active == (key in self._open):
            return None
        alert = Alert(verdict.rule, "raised" if verdict.active else "cleared",
                      verdict.severity if verdict.active else self._open[key].severity,
                      subject.device, subject.kind, subject.community, subject.city,
                      verdict.value, verdict.score if verdict.active else 0.0,
                      verdict.message if verdict.active or verdict.message
                      else f"{verdict.rule.replace('_', ' ')}: back to normal", ts_ms)
        if verdict.active:
            self._opened(alert)
        else:
            self._closed(*key)
        self._changed = True
        return alert

    def observe_all(self, subject: Subject, verdicts: list[Verdict], ts_ms: int) -> list[Alert]:
        """The transitions of several verdicts on one subject (the common case, nothing
        changes, decided here without a call per verdict)."""
        opened, device = self._open, subject.device
        return [alert for verdict in verdicts
                if bool(verdict.active) != ((device, verdict.rule) in opened)
                and (alert := self.observe(subject, verdict, ts_ms)) is not None]

    def load(self) -> None:
        """Read the saved open alerts; an unreadable file (empty, torn, not a list of
        alerts) is set aside and the collector starts with none open."""
        if self._path is None or not self._path.exists():
            return
        try:
            records = json.loads(self._path.read_bytes())
            alerts = [_alert(record) for record in records] if isinstance(records, list) \
                else None
        except (OSError, ValueError, TypeError) as exc:
            set_aside(self._path, f"{type(exc).__name__}: {exc}")
            return
        if alerts is None:
            set_aside(self._path, "not a list of alerts")
            return
        for alert in alerts:
            self._opened(alert)

    def reopen(self, alert: Alert) -> None:
        """An alert raised elsewhere (by the collector this one took over from) is open."""
        self._opened(alert)

    def close_all(self, devices: set[str]) -> None:
        """Forget the open alerts of ``devices`` (another collector holds them now)."""
        for key in [key for key in self._open if key[0] in devices]:
            self._closed(*key)

    def changed(self) -> None:
        """Save at the next :meth:`save` even if nothing changed (the last save failed)."""
        self._changed = True

    def save(self) -> None:
        """Write the open alerts if they changed since the last save (write, fsync,
        rename: a crash leaves the old file or the new one)."""
        if self._path is None or not self._changed:
            return
        self._changed = False
        write_atomic(self._path, orjson.dumps(self.open))


_ALERT_FIELDS = frozenset(f.name for f in fields(Alert))


def _alert(record: object) -> Alert:
    """One saved alert, checked field by field.

    Raises:
        ValueError: not an alert record.
    """
    if not isinstance(record, dict) or set(record) != _ALERT_FIELDS:
        raise ValueError(f"not an alert record: {str(record)[:80]}")
    for name in ("rule", "state", "severity", "device", "kind", "community", "city",
                 "message"):
        if not isinstance(record[name], str):
            raise ValueError(f"alert field {name!r} is not text")
    for name in ("value", "score", "ts_ms"):
        if not isinstance(record[name], int | float) or isinstance(record[name], bool):
            raise ValueError(f"alert field {name!r} is not a number")
    return Alert(**record)
