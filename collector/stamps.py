"""Stamps for readings without ``ts``: one per reading, unique per device, kept for redeliveries.

A reading's identity in InfluxDB is (measurement, tags, timestamp): two readings of one
device on the same millisecond are one point, the second overwriting the first. A device
without a clock sends no ``ts``; a burst of its readings (a backlog the broker kept while
the collector was away) is read from one socket read in well under a millisecond. So a
reading without ``ts`` is stamped with its receive time, moved forward to one millisecond
past the device's last stamp when that time is already taken (``Stamp.moved``: the rules
that compute a rate do not use such a reading, its time says nothing about when it was
measured).

A redelivered message must get the stamp it had the first time (else it is written twice).
The broker redelivers with the DUP flag and the same packet id (MQTT 3.1.1, 4.4), so the
stamp is journaled under a key of (packet id, topic, payload); a DUP message with a known
key gets its stamp back, and a message without DUP is new and takes a new stamp even when
its bytes are the same as an earlier one's (a heartbeat repeats itself).

The journal is one append-only text file an hour (``<key> <device> <ms>``), flushed after
each line so it survives a crash of the process, and kept for ``keep_hours``. On start it
also gives each device's last stamp back, so a new stamp never takes an old one's even when a
burst had moved stamps ahead of the clock. Unreadable lines are skipped and counted; a file
that is not ours is left where it is, with a warning.

The case it cannot tell apart: a message the collector never read before a crash, delivered
again with DUP, whose packet id, topic and payload are all those of an earlier message still
in the journal, gets the earlier stamp (and overwrites that reading).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TextIO

from collector.records import Inbound

log = logging.getLogger(__name__)

MAX_ENTRIES = 1_000_000


class Stamp(NamedTuple):
    """The time given to a reading without ``ts``; ``moved`` when it is not its receive
    time but later (the device's previous stamp was that late already)."""

    ts_ms: int
    moved: bool


def next_stamp(received_ms: int, last_ms: int) -> Stamp:
    """A fresh stamp: the receive time, or one millisecond past the device's last stamp
    when that time is taken already (``moved``)."""
    if received_ms <= last_ms:
        return Stamp(last_ms + 1, True)
    return Stamp(received_ms, False)


def message_key(msg: Inbound) -> str:
    digest = hashlib.blake2b(msg.topic.encode() + b"\0" + msg.payload, digest_size=16,
                             salt=msg.packet_id.to_bytes(2, "big"))
    return digest.hexdigest()


class StampJournal:
    """Gives out stamps and remembers them."""

    def __init__(self, directory: Path, keep_hours: int = 24,
                 clock: Callable[[], float] = time.time) -> None:
        self._dir = directory
        self._keep_hours = keep_hours
        self._clock = clock
        self._stamps: OrderedDict[str, int] = OrderedDict()
        self._last: dict[str, int] = {}      # device -> its latest stamp
        self._file: TextIO | None = None
        self._hour = -1
        self.unreadable_lines = 0
        #: Why the last journal write failed, or None.
        self.failing: str | None = None

    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        oldest = int(self._clock() // 3600) - self._keep_hours
        hours = []
        for path in self._dir.iterdir():
            if path.suffix == ".log" and path.stem.isdigit():
                hours.append((int(path.stem), path))
            elif not path.name.endswith(".tmp") and ".bad-" not in path.name:
                log.warning("stamp journal %s: %s is not one of ours; left alone", self._dir,
                            path.name)
        for hour, path in sorted(hours):
            if hour < oldest:
                path.unlink(missing_ok=True)
                continue
            self._read(path)
        if self.unreadable_lines:
            log.warning("stamp journal %s: %d unreadable lines skipped (a torn write?)",
                        self._dir, self.unreadable_lines)

    def _read(self, path: Path) -> None:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            log.error("stamp journal %s unreadable (%s); its stamps are forgotten", path, exc)
            return
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) != 3 or len(parts[0]) != 32 or not parts[2].isdigit():
                self.unreadable_lines += 1
                continue
            key, device, ms = parts[0], parts[1], int(parts[2])
            self._remember(key, ms)
            if ms > self._last.get(device, 0):
                self._last[device] = ms

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def stamp(self, msg: Inbound, device: str) -> Stamp:
        """The stamp for the reading of ``msg`` (a message without ``ts``) from ``device``."""
        key = message_key(msg)
        if msg.redelivered:
            first = self._stamps.get(key)
            if first is not None:
                return Stamp(first, False)
        ts_ms, moved = next_stamp(msg.received_ms, self._last.get(device, 0))
        self._last[device] = ts_ms
        self._remember(key, ts_ms)
        try:
            handle = self._current()
            handle.write(f"{key} {device} {ts_ms}\n")
            handle.flush()
        except OSError as exc:
            # The stamp is still unique; only a redelivery after a crash would get a new one.
            if self.failing is None:
                log.error("stamp journal %s cannot be written (%s); stamps are kept in "
                          "memory only until it can", self._dir, exc)
            self.failing = f"{type(exc).__name__}: {exc}"
            self.close()
        else:
            self.failing = None
        return Stamp(ts_ms, moved)

    def _remember(self, key: str, ms: int) -> None:
        self._stamps[key] = ms
        self._stamps.move_to_end(key)
        if len(self._stamps) > MAX_ENTRIES:
            self._stamps.popitem(last=False)

    def _current(self) -> TextIO:
        hour = int(self._clock() // 3600)
        if self._file is None or hour != self._hour:
            self.close()
            self._hour = hour
            path = self._dir / f"{hour}.log"
            self._file = path.open("a", encoding="utf-8")
            # A crash may have torn the last line: start on a fresh one.
            if self._file.tell() and not path.read_bytes().endswith(b"\n"):
                self._file.write("\n")
        return self._file
