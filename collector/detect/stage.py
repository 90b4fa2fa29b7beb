"""The detect stage: every accepted reading and event through the rules and detectors.

Plain synchronous code after ingest (``pipeline.py``). Per device it keeps the rules' small
state, one statistical detector per watched field, and when it last reported; all of it is
saved with :meth:`DetectStage.snapshot` and brought back at start.

Analytics never stop ingest: each rule and detector runs in its own guard. A failure is
counted (``errors``, by rule, in the self-metrics), logged once per rule and device with its
traceback, and the other rules go on. Registry attributes the rules read are checked when
the stage is built (``rules.checked_attrs``): a bad one is left out for that device and
listed in ``registry_problems`` (the collector raises its ``registry_problem`` alert).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import pickle
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from collector.decode import Decoded
from collector.detect import messages
from collector.detect.alerts import Alert, AlertBook, Subject, Verdict
from collector.detect.catalog import RATE_READINGS, for_device, readings_per_day
from collector.detect.daily import Daily
from collector.detect.levels import BLOCK, Levels
from collector.detect.multivariate import T2
from collector.detect.rules import RULES, Seen, checked_attrs, checked_state
from collector.detect.stats import Surprise
from collector.files import set_aside, write_atomic
from collector.settings import DetectSettings
from devices.labels import Language
from devices.payloads import Event, Telemetry
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
#: The snapshot's format; a file of another version is set aside, not misread.
SNAPSHOT_VERSION = 3
#: Snapshot versions this collector reads: 2 was one pickle of the three mappings.
SNAPSHOT_READS = (2, 3)
#: Entries pickled at a time: the snapshot is taken on the event loop, which runs between
#: parts (a part of a hundred water devices' detectors in their first day, the largest,
#: pickles in about 17 ms here).
SNAPSHOT_PART = 100
#: The periodic snapshot writes one of this many segments in turn (each device's entries are
#: in one, by a hash of its id): a tenth of the state every ``snapshot_s``, not all of it, and
#: after a crash a device's state is at most ``snapshot_s`` x SNAPSHOT_SEGMENTS old. The
#: whole state is written at shutdown, in one file, and the segments are then removed.
SNAPSHOT_SEGMENTS = 10
DAY_MS = 86_400_000
CST_MS = 8 * 3_600_000


def local_hour(ts_ms: int) -> float:
    return ((ts_ms + CST_MS) % DAY_MS) / 3_600_000


def _learnt(last: tuple[int, float] | None, ts_ms: int, moved: bool) -> tuple[int, float]:
    """When a device last reported and its usual interval (ms), after a reading at ``ts_ms``
    (``last``: the same before it, None for its first)."""
    if last is None:
        return ts_ms, 0.0
    if moved:
        # A moved stamp is one millisecond past the last: no interval to learn from it.
        return max(ts_ms, last[0]), last[1]
    if ts_ms > last[0]:
        gap = ts_ms - last[0]
        return ts_ms, (gap if last[1] == 0 else last[1] + 0.1 * (gap - last[1]))
    return last


class DetectStage:
    """Rules and detectors for every device; alerts through the book."""

    def __init__(self, registry: Registry, settings: DetectSettings, book: AlertBook,
                 language: Language = "en") -> None:
        self._registry = registry
        self._settings = settings
        #: of the alert messages: the collector passes ui.language (zh by default)
        self._language = language
        self.book = book
        self._state: dict[str, dict[str, Any]] = {}
        self._detectors: dict[tuple[str, str], Surprise | Daily | Levels] = {}
        self._vectors: dict[str, list[float]] = {}   # t2: each device's last field values
        #: t2: a device's first readings (fields, hour, time in s or None for a moved stamp)
        #: until there are RATE_READINGS, whose interval sets its detector's reading rate.
        self._pending: dict[str, list[tuple[list[float], int, float | None]]] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # last reading, usual interval (ms)
        self._subjects: dict[str, Subject] = {}
        self._saving = asyncio.Lock()      # one snapshot at a time (the periodic and the last)
        self._segments: dict[str, int] = {}     # each device's snapshot segment, once worked out
        #: Failures by rule (or detector) since start, for the self-metrics.
        self.errors: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()
        #: "device: problem" for every registry attribute the rules cannot use.
        self.registry_problems: list[str] = []
        self._attrs: dict[str, Mapping[str, Any]] = {}
        for device in registry.devices.values():
            attrs, problems = checked_attrs(device)
            if problems:
                self._attrs[device.id] = attrs
                self.registry_problems.extend(f"{device.id}: {p}" for p in problems)
        for problem in self.registry_problems[:20]:
            log.error("registry: %s; the rules that need it are skipped for this device",
                      problem)
        if len(self.registry_problems) > 20:
            log.error("registry: ... and %d more attribute problems",
                      len(self.registry_problems) - 20)

    def _failed(self, rule: str, device: str) -> None:
        self.errors[rule] += 1
        if (rule, device) not in self._logged:
            self._logged.add((rule, device))
            log.exception("detect: %s failed on %s (readings are still written; logged once "
                          "per rule and device)", rule, device)

    def observe_many(self, items: list[Decoded]) -> list[Alert]:
        """The alert transitions of one message's accepted objects; never raises."""
        alerts: list[Alert] = []
        if items:
            try:
                self._observe(items, alerts)
            except Exception:
                # A bug of the stage's own bookkeeping (each rule and detector has its own
                # guard): counted and logged; the transitions so far are given, the rest
                # of this message's objects are not judged (judging them one by one now
                # could judge some twice).
                self._failed("detect_stage", items[0].where.device)
        return alerts

    def observe(self, item: Decoded) -> list[Alert]:
        """The alert transitions one accepted object causes."""
        alerts: list[Alert] = []
        self._observe([item], alerts)
        return alerts

    def _subject(self, device: Device) -> Subject:
        subject = self._subjects.get(device.id)
        if subject is None:
            subject = self._subjects[device.id] = Subject.of(device)
        return subject

    def _observe(self, items: list[Decoded], alerts: list[Alert]) -> None:
        """The transitions of one message's objects (one device's, on one topic: a reading,
        an event, a status, or an array of readings), in order, into ``alerts``.

        What depends only on the device (its registry entry, rule state, rules, attributes,
        open alerts) is looked up once a message, and one :class:`Seen` is moved from object
        to object: for a lit streetlight's array about 1 µs a reading less than a lookup
        each (README "Performance"). A rule still runs once per object, in order."""
        where = items[0].where
        device = self._registry.device(where.device)
        if device is None or not self._settings.enabled:
            return
        did = device.id
        state = self._state.get(did)
        if state is None:   # not setdefault: that builds an empty dict for every message
            state = self._state[did] = {}
        opened = self.book.rules_open(did)
        subject: Subject | None = None      # looked up when a rule has something to say
        seen = Seen(device, 0, 0.0, _NO_DETAIL, None, _NO_DETAIL, state, opened.__contains__,
                    self._settings, self._attrs.get(did, device.attrs), False, self._language)
        rules = RULES[device.kind]
        statistical = self._settings.statistical and device.kind in WATCHED
        last = self._seen.get(did)
        for item in items:
            if item.where is not where and item.where != where:
                self._observe([item], alerts)   # not this message's device: on its own
                last = self._seen.get(did)
                opened = self.book.rules_open(did)
                seen.open = opened.__contains__
                continue
            ts_ms = item.ts_ms
            self._seen[did] = last = _learnt(last, ts_ms, item.moved)
            # Most readings: no alert open and not a status, so no presence verdict to make.
            if (opened or item.online is not None) and \
                    (presence := self._presence_alerts(device, item)):
                alerts.extend(presence)
                opened = self.book.rules_open(did)     # the book may have changed the set
                seen.open = opened.__contains__
            if item.online is not None:
                continue
            body = item.body
            if isinstance(body, Telemetry):
                # The validated model's own values, not a copy: the rules only look fields
                # up, and copying them was the stage's largest single cost (issue 15).
                fields: dict[str, Any] = body.__dict__
                seen.event, seen.detail = None, _NO_DETAIL
            else:
                assert isinstance(body, Event)
                fields = {}
                seen.event = body.type
                seen.detail = {"result": getattr(body, "result", None),
                               "code": getattr(body, "code", None)}
            seen.ts_ms, seen.hour, seen.moved, seen.fields = \
                ts_ms, local_hour(ts_ms), item.moved, fields
            verdicts: list[Verdict] = []
            for rule in rules:
                try:
                    verdicts.extend(rule(seen))
                except Exception:
                    self._failed(rule.__name__, did)
            if statistical and fields:
                try:
                    verdicts.extend(self._statistics(device, fields, seen))
                except Exception:
                    self._failed("statistics", did)
            if verdicts:     # most readings: none (a quiet rule yields nothing)
                subject = subject or self._subject(device)
                alerts.extend(self.book.observe_all(subject, verdicts, ts_ms))
                opened = self.book.rules_open(did)     # the book may have made a new set
                seen.open = opened.__contains__

    def _statistics(self, device: Device, fields: dict[str, Any], seen: Seen) -> list[Verdict]:
        if self._settings.statistical_model == "t2":
            return self._multivariate(device, fields, seen)
        out = []
        hour = int(seen.hour)
        for name in WATCHED.get(device.kind, ()):
            value = fields.get(name)
            if value is None:
                continue
            detector = self._detectors.get((device.id, name))
            if not isinstance(detector, Surprise):
                # Surprise: judged against this series' own usual scores, hour by hour, so
                # a noisy or cyclic series does not flood operators.
                detector = self._detectors[(device.id, name)] = Surprise()
            score = detector.update(value, hour)
            rule = f"anomaly_{name}"
            active = score >= (0.5 if seen.open(rule) else 1.0)
            out.append(Verdict(rule, active, "info", value,
                               seen.say("anomaly_field", name=name, value=value), score))
        return out

    def _multivariate(self, device: Device, fields: dict[str, Any],
                      seen: Seen) -> list[Verdict]:
        """One T² detector over all of the device's watched fields (the last value of a
        field the reading does not carry); it starts once every field has been seen."""
        names = WATCHED[device.kind]     # the caller looks at watched kinds only
        last = self._vectors.setdefault(device.id, [math.nan] * len(names))
        before = last[0]                 # a one-field device's alert names its jump
        for i, name in enumerate(names):
            value = fields.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                last[i] = float(value)
        if any(math.isnan(v) for v in last):
            return []
        detector = self._detectors.get((device.id, "*"))
        if detector is None:
            detector = self._start(device.id, last, seen)
            if detector is None:
                return []
        assert isinstance(detector, Daily | Levels)
        score = detector.update(np.array(last), int(seen.hour))
        active = score >= 1.0
        if not active and not seen.open("anomaly"):
            return [Verdict("anomaly", False, "info")]
        if isinstance(detector, Levels) and active and detector.said is not None:
            message = seen.say("anomaly_shift", name=names[0], n=BLOCK,
                               # the earlier mean is a level's middle: three figures
                               previous=float(f"{detector.said[0]:.3g}"),
                               value=float(f"{detector.said[1]:.4g}"))
        elif isinstance(detector, Levels):
            message = seen.say("anomaly_jump", name=names[0], previous=before, value=last[0])
        else:
            message = seen.say("anomaly", drivers=", ".join(
                f"{names[i]} {share:.0%}" for i, share in detector.drivers()[:2]))
        return [Verdict("anomaly", active, "info", score, message, score)]

    def _start(self, did: str, last: list[float], seen: Seen) -> Daily | Levels | None:
        """A device's detector, once its first ``RATE_READINGS`` readings are in: their
        median interval sets its reading rate (so a device reporting every second is
        smoothed, one every five minutes warms up over a day of its readings, and each
        spends its budget per its own readings), as ``sct detect replay`` takes it from a
        file's first rows; the readings before this one are its first learnt. None until
        then. (Built at the first reading, every device was taken for one a minute.)"""
        pending = self._pending.setdefault(did, [])
        pending.append((list(last), int(seen.hour), None if seen.moved else seen.ts_ms / 1000))
        if len(pending) < RATE_READINGS:
            return None
        del self._pending[did]
        detector = self._detectors[(did, "*")] = for_device(
            len(last), readings_per_day(t for _, _, t in pending if t is not None),
            self._settings.statistical_alerts_per_100_days / 100)
        for values, hour, _ in pending[:-1]:      # the last is this reading: the caller's
            detector.update(np.array(values), hour)
        return detector

    def _presence_alerts(self, device: Device, item: Decoded) -> list[Alert]:
        # Almost always nothing to do: no Verdict is built unless an alert may change.
        verdicts = []
        opened = self.book.rules_open(device.id)
        if "device_silent" in opened:
            verdicts.append(Verdict("device_silent", False, "warning"))
        if item.online is not None:
            verdicts.append(Verdict("device_offline", not item.online, "warning", 0.0,
                                    messages.say(self._language, "device_offline")))
        elif "device_offline" in opened:
            verdicts.append(Verdict("device_offline", False, "warning"))
        return self.book.observe_all(self._subject(device), verdicts, item.ts_ms) \
            if verdicts else []

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
                messages.say(self._language, "device_silent", minutes=(now_ms - last) / 60_000,
                             usual=interval / 60_000)), now_ms)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def forget(self, devices: list[str]) -> None:
        """Drop what is known of ``devices`` (cluster mode: another collector holds them)."""
        gone = set(devices)
        for device in gone:
            self._state.pop(device, None)
            self._seen.pop(device, None)
            self._vectors.pop(device, None)
            self._pending.pop(device, None)
        self._detectors = {key: d for key, d in self._detectors.items() if key[0] not in gone}
        self.book.close_all(gone)

    def statistical_states(self, devices: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The ``t2`` detectors of ``devices`` past their warm-up, as plain data (under
        ``t2`` for the pair, ``levels`` for a one-field device), with the device's last
        field values (cluster mode: for a collector that takes them over)."""
        out = {}
        for device in devices:
            detector = self._detectors.get((device, "*"))
            state = detector.state() if isinstance(detector, Daily | Levels) else None
            if state is not None:
                key = "levels" if isinstance(detector, Levels) else "t2"
                out[device] = {key: state, "last": self._vectors.get(device)}
        return out

    def resume_statistical(self, states: dict[str, Any]) -> tuple[int, int]:
        """Take over the detectors :meth:`statistical_states` gave (of devices this registry
        knows, with the fields its kind has): how many resumed, how many were refused."""
        resumed = refused = 0
        for device, saved in states.items():
            found = self._registry.device(device)
            names = WATCHED.get(found.kind, ()) if found is not None else ()
            try:
                if not names or not isinstance(saved, dict):
                    raise ValueError("not a watched device of this registry")
                detector: Daily | Levels = Levels.from_state(saved["levels"]) \
                    if "levels" in saved else Daily.from_state(saved.get("t2"))
                last = saved.get("last")
                if detector.dims != len(names) or not (
                        isinstance(last, list) and len(last) == len(names)
                        and all(isinstance(v, int | float) for v in last)):
                    raise ValueError("fields of another number")
            except ValueError as exc:
                refused += 1
                log.debug("statistical state of %s not resumed: %s", device, exc)
                continue
            self._detectors[(device, "*")] = detector
            self._vectors[device] = [float(v) for v in last]
            resumed += 1
        return resumed, refused

    def snapshot(self, path: Path) -> None:
        """Save the whole detector state (atomically: write, fsync, rename) in one go, for
        a caller without an event loop (the collector uses :meth:`snapshot_async`); the
        segments of earlier periodic snapshots, older than it, are removed."""
        write_atomic(path, b"".join(self._snapshot_parts()))
        _remove_segments(path)

    async def snapshot_async(self, path: Path, segment: int | None = None) -> None:
        """Save the detector state as :meth:`snapshot` does (``segment`` None: at shutdown),
        or only segment ``segment`` of it (``segment_path``: the periodic snapshot), a part
        at a time with the event loop running between parts, and the file written in a
        thread: the collector goes on reading while a large fleet's state is saved (one
        pickle of it all held the loop for about 0.1 s for the demo's 2,743 devices in their
        first day, and it grows with the fleet; a part holds it for at most about 17 ms).
        Each device's entries are as they were when their part was pickled."""
        async with self._saving:    # two writers of one temporary file would tear it
            parts = []
            for part in self._snapshot_parts(segment):
                parts.append(part)
                await asyncio.sleep(0)
            if segment is None:
                await asyncio.to_thread(self._write_whole, path, b"".join(parts))
            else:
                await asyncio.to_thread(write_atomic, segment_path(path, segment),
                                        b"".join(parts))

    @staticmethod
    def _write_whole(path: Path, data: bytes) -> None:
        write_atomic(path, data)
        _remove_segments(path)

    def _snapshot_parts(self, segment: int | None = None) -> Iterator[bytes]:
        """A header, then each mapping as pickled parts of ``SNAPSHOT_PART`` entries (of
        the devices of ``segment`` only, when given)."""
        yield pickle.dumps({"version": SNAPSHOT_VERSION}, protocol=pickle.HIGHEST_PROTOCOL)
        of = self._segment_of
        for name, mapping in (("state", self._state), ("detectors", self._detectors),
                              ("seen", self._seen)):
            # Entries that come meanwhile: the next time.
            items = list(mapping.items()) if segment is None else [
                (key, value) for key, value in mapping.items()
                if of(key[0] if isinstance(key, tuple) else key) == segment]
            for at in range(0, len(items), SNAPSHOT_PART):
                yield pickle.dumps((name, items[at:at + SNAPSHOT_PART]),
                                   protocol=pickle.HIGHEST_PROTOCOL)

    def _segment_of(self, device: str) -> int:
        """The segment a device's entries are saved in: stable across restarts (CRC-32 of
        its id, not Python's salted hash), so each device is in one segment file only."""
        segment = self._segments.get(device)
        if segment is None:
            segment = self._segments[device] = zlib.crc32(device.encode()) % SNAPSHOT_SEGMENTS
        return segment

    def restore(self, path: Path) -> None:
        """Bring back the state :meth:`snapshot` and the periodic segments wrote (our own
        files only): the whole state saved at the last shutdown, then each segment saved
        since (after a crash), newer, over it. An unreadable file, or one of another shape
        or version, is set aside. Of a file torn after its first parts (a disk's fault: it
        is written whole, then renamed), the parts before the tear are kept and the file is
        set aside."""
        for k, file in enumerate([path, *(segment_path(path, n)
                                          for n in range(SNAPSHOT_SEGMENTS))]):
            read = _restore_file(file)
            if read is None:
                continue
            state, detectors, seen = read
            if k == 0:
                self._state, self._detectors, self._seen = state, detectors, seen
            else:
                self._state.update(state)
                self._detectors.update(detectors)
                self._seen.update(seen)
        if self._state:
            log.info("detector state restored: %d devices", len(self._state))


def segment_path(path: Path, segment: int) -> Path:
    """Where the periodic snapshot keeps segment ``segment`` of the state saved at ``path``."""
    return path.with_name(f"{path.name}.{segment}")


def _remove_segments(path: Path) -> None:
    for segment in range(SNAPSHOT_SEGMENTS):
        segment_path(path, segment).unlink(missing_ok=True)


def _restore_file(path: Path) -> tuple[dict[str, dict[str, Any]],
                                       dict[tuple[str, str], Surprise | Daily | Levels],
                                       dict[str, tuple[int, float]]] | None:
    """One snapshot file's mappings, or None when there is none or it would not read at all
    (then it is set aside); a file torn after its first parts gives those and is set aside."""
    if not path.exists():
        return None
    try:
        saved, torn = _read_parts(path.read_bytes())
        state, detectors, seen = _checked_snapshot(saved)
    except Exception as exc:  # a torn pickle can raise almost anything
        set_aside(path, f"{type(exc).__name__}: {exc}")
        return None
    if torn is not None:
        set_aside(path, f"{torn}; kept the {len(state)} devices' state read before it")
    return state, detectors, seen


def _read_parts(data: bytes) -> tuple[Any, str | None]:
    """The snapshot's mappings put together from its parts (a version-2 file, or a test's,
    is one pickle of them), and what tore it, if a part after the header would not read.

    Raises:
        Exception: the header would not read (whatever the unpickler raises).
    """
    stream = io.BytesIO(data)
    head = pickle.load(stream)       # only ever our own file, in our storage dir
    if head != {"version": SNAPSHOT_VERSION}:
        return head, None            # the mappings in one pickle (version 2), or not ours
    saved: dict[str, Any] = {"version": SNAPSHOT_VERSION, "state": {}, "detectors": {},
                             "seen": {}}
    while stream.tell() < len(data):
        try:
            name, items = pickle.load(stream)
            saved[name].update(items)
        except Exception as exc:     # a torn part: keep the parts before it
            return saved, f"a part at byte {stream.tell()} would not read ({exc!r:.80})"
    return saved, None


def _checked_snapshot(saved: Any) -> tuple[dict[str, dict[str, Any]],
                                           dict[tuple[str, str], Surprise | Daily | Levels],
                                           dict[str, tuple[int, float]]]:
    """The three parts of a snapshot, each checked for the shape this version uses.

    Raises:
        ValueError: another version, or a part of the wrong shape.
    """
    if not isinstance(saved, dict) or saved.get("version") not in SNAPSHOT_READS:
        version = saved.get("version") if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"snapshot version {version!r}, this collector reads "
                         f"{' or '.join(map(str, SNAPSHOT_READS))}")
    state, detectors, seen = saved.get("state"), saved.get("detectors"), saved.get("seen")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in state.items()):
        raise ValueError("'state' is not a mapping of device to rule state")
    if not isinstance(detectors, dict) or not all(
            isinstance(k, tuple) and isinstance(v, Surprise | Daily | Levels | T2)
            for k, v in detectors.items()):
        raise ValueError("'detectors' is not a mapping of (device, field) to detector")
    if not isinstance(seen, dict) or not all(
            isinstance(k, str) and isinstance(v, tuple) and len(v) == 2
            and isinstance(v[0], int) and isinstance(v[1], int | float)
            for k, v in seen.items()):
        raise ValueError("'seen' is not a mapping of device to (last, interval)")
    dropped = 0
    for device, entries in state.items():
        state[device], wrong = checked_state(entries)
        dropped += len(wrong)
    if dropped:
        log.warning("detector state: %d rule-state entries of the wrong type forgotten (those "
                    "rules learn them again)", dropped)
    # A plain T2 (a snapshot from before the daily detector), or a pair over one field (from
    # before the levels model) is dropped: the device warms up again with today's model.
    return state, {k: v for k, v in detectors.items() if isinstance(v, Surprise | Levels)
                   or (isinstance(v, Daily) and v.dims > 1)}, seen
