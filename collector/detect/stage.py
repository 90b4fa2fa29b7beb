"""The detect stage: every accepted reading and event through the rules and detectors.

Plain synchronous code between enrich and the sink. Per device it keeps the rules' small
state, one statistical detector per watched field, and when it last reported; all of it is
saved with :meth:`DetectStage.snapshot` and brought back at start.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

from collector.decode import Decoded
from collector.detect.alerts import Alert, AlertBook, Subject, Verdict
from collector.detect.rules import RULES, Seen
from collector.detect.stats import Surprise
from collector.settings import DetectSettings
from devices.payloads import ENVELOPE_FIELDS, Event, Telemetry
from devices.registry import Device, Registry

log = logging.getLogger(__name__)

#: Fields watched by the statistical detectors. Not lamp power: it jumps at every switch,
#: and the ``lamp_power`` rule already judges it against the rated power and dimming.
WATCHED: dict[str, tuple[str, ...]] = {
    "water_meter": ("flow_m3h", "pressure_kpa"),
    "water_quality": ("turbidity_ntu", "chlorine_mg_l", "conductivity_us_cm"),
    "water_level": ("level_pct",),
}
_NO_DETAIL: dict[str, Any] = {}
DAY_MS = 86_400_000
CST_MS = 8 * 3_600_000


def local_hour(ts_ms: int) -> float:
    return ((ts_ms + CST_MS) % DAY_MS) / 3_600_000


class DetectStage:
    """Rules and detectors for every device; alerts through the book."""

    def __init__(self, registry: Registry, settings: DetectSettings, book: AlertBook) -> None:
        self._registry = registry
        self._settings = settings
        self.book = book
        self._state: dict[str, dict[str, Any]] = {}
        self._detectors: dict[tuple[str, str], Surprise] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # last reading, usual interval (ms)
        self._subjects: dict[str, Subject] = {}

    def _subject(self, device: Device) -> Subject:
        subject = self._subjects.get(device.id)
        if subject is None:
            subject = self._subjects[device.id] = Subject.of(device)
        return subject

    def observe(self, item: Decoded) -> list[Alert]:
        """The alert transitions one accepted object causes."""
        device = self._registry.device(item.where.device)
        if device is None or not self._settings.enabled:
            return []
        alerts = self._presence(device, item)
        if item.online is not None:
            return alerts
        body = item.body
        if isinstance(body, Telemetry):
            values = body.__dict__
            fields = {name: values[name] for name in body.model_fields_set
                      if name not in ENVELOPE_FIELDS}
            event, detail = None, _NO_DETAIL
        else:
            assert isinstance(body, Event)
            fields, event = {}, body.type
            detail = {"result": getattr(body, "result", None),
                      "code": getattr(body, "code", None)}
        seen = Seen(device, item.ts_ms, local_hour(item.ts_ms), fields, event, detail,
                    self._state.setdefault(device.id, {}),
                    lambda rule: self.book.is_open(device.id, rule), self._settings)
        verdicts = [v for rule in RULES[device.kind] for v in rule(seen)]
        if fields and self._settings.statistical:
            verdicts.extend(self._statistics(device, fields, seen))
        alerts.extend(self.book.observe_all(self._subject(device), verdicts, item.ts_ms))
        return alerts

    def _statistics(self, device: Device, fields: dict[str, Any], seen: Seen) -> list[Verdict]:
        out = []
        hour = int(seen.hour)
        for name in WATCHED.get(device.kind, ()):
            value = fields.get(name)
            if value is None:
                continue
            detector = self._detectors.get((device.id, name))
            if detector is None:
                # Surprise: judged against this series' own usual scores, hour by hour, so
                # a noisy or cyclic series does not flood operators.
                detector = self._detectors[(device.id, name)] = Surprise()
            score = detector.update(value, hour)
            rule = f"anomaly_{name}"
            active = score >= (0.5 if seen.open(rule) else 1.0)
            out.append(Verdict(rule, active, "info", value,
                               f"{name} {value:g} is unusual for this device", score))
        return out

    def _presence(self, device: Device, item: Decoded) -> list[Alert]:
        last = self._seen.get(device.id)
        if last is not None and item.ts_ms > last[0]:
            gap = item.ts_ms - last[0]
            interval = gap if last[1] == 0 else last[1] + 0.1 * (gap - last[1])
            self._seen[device.id] = (item.ts_ms, interval)
        elif last is None:
            self._seen[device.id] = (item.ts_ms, 0.0)
        # Almost always nothing to do: no Verdict is built unless an alert may change.
        verdicts = []
        if self.book.is_open(device.id, "device_silent"):
            verdicts.append(Verdict("device_silent", False, "warning"))
        if item.online is not None:
            verdicts.append(Verdict("device_offline", not item.online, "warning", 0.0,
                                    "device says it is offline (or its last will)"))
        elif self.book.is_open(device.id, "device_offline"):
            verdicts.append(Verdict("device_offline", False, "warning"))
        return self.book.observe_all(self._subject(device), verdicts, item.ts_ms)

    def tick(self, now_ms: int) -> list[Alert]:
        """Devices silent for longer than expected (called every few seconds)."""
        alerts = []
        cfg = self._settings
        for device_id, (last, interval) in self._seen.items():
            if not interval:
                continue
            limit = max(cfg.silent_min_s * 1000, cfg.silent_factor * interval)
            silent = now_ms - last > limit
            device = self._registry.device(device_id)
            if device is None or silent == self.book.is_open(device_id, "device_silent"):
                continue
            alert = self.book.observe(self._subject(device), Verdict(
                "device_silent", silent, "warning", (now_ms - last) / 1000,
                f"no reading for {(now_ms - last) / 60_000:.0f} min "
                f"(usually every {interval / 60_000:.1f} min)"), now_ms)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def snapshot(self, path: Path) -> None:
        """Save the detector state (atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            pickle.dump({"state": self._state, "detectors": self._detectors,
                         "seen": self._seen}, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)

    def restore(self, path: Path) -> None:
        """Bring back a snapshot written by :meth:`snapshot` (our own file only)."""
        if not path.exists():
            return
        try:
            with path.open("rb") as handle:
                saved = pickle.load(handle)  # only ever our own file, in our storage dir
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.error("detector state %s unreadable (%s): starting afresh", path, exc)
            return
        self._state, self._detectors, self._seen = (saved["state"], saved["detectors"],
                                                    saved["seen"])
        log.info("detector state restored: %d devices", len(self._state))
