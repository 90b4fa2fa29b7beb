"""Stamp once: a reading without ``ts`` keeps its first receive time through redeliveries.

A reading's identity in InfluxDB is (measurement, tags, timestamp). A message without
``ts`` is stamped with the time it was received; if the broker delivers it again (after a
crash or a lost connection, before its acknowledgement), a new stamp would write it twice.
So the stamps of such messages are journaled, keyed by a hash of topic and payload, and a
redelivered message (MQTT's DUP flag) with a known key gets its first stamp back.

The journal is one append-only text file an hour (``<hex key> <ms>``), flushed after each
line so it survives a crash of the process, and kept for ``keep_hours``. The one case it
cannot tell apart: two byte-identical messages without ``ts`` on one topic, both redelivered,
are written as one point.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from collector.records import Inbound

MAX_ENTRIES = 1_000_000


def _key(msg: Inbound) -> str:
    digest = hashlib.blake2b(msg.topic.encode() + b"\0" + msg.payload, digest_size=16)
    return digest.hexdigest()


class StampJournal:
    """Remembers first receive times of messages that needed one."""

    def __init__(self, directory: Path, keep_hours: int = 24) -> None:
        self._dir = directory
        self._keep_hours = keep_hours
        self._stamps: OrderedDict[str, int] = OrderedDict()
        self._file: TextIO | None = None
        self._hour = -1

    def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        oldest = int(time.time() // 3600) - self._keep_hours
        for path in sorted(self._dir.glob("*.log")):
            if int(path.stem) < oldest:
                path.unlink()
                continue
            for line in path.read_text(errors="replace").splitlines():
                key, _, ms = line.partition(" ")
                if ms.isdigit():
                    self._remember(key, int(ms))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def restamp(self, msg: Inbound) -> Inbound:
        """``msg`` with its first receive time when it is a redelivery we stamped before."""
        if not msg.redelivered or not self._stamps:
            return msg
        first = self._stamps.get(_key(msg))
        return msg if first is None else replace(msg, received_ms=first)

    def record(self, msg: Inbound) -> None:
        """Journal the receive time of a message whose readings were stamped with it."""
        key = _key(msg)
        if key in self._stamps:
            return
        self._remember(key, msg.received_ms)
        handle = self._current()
        handle.write(f"{key} {msg.received_ms}\n")
        handle.flush()

    def _remember(self, key: str, ms: int) -> None:
        self._stamps[key] = ms
        if len(self._stamps) > MAX_ENTRIES:
            self._stamps.popitem(last=False)

    def _current(self) -> TextIO:
        hour = int(time.time() // 3600)
        if self._file is None or hour != self._hour:
            self.close()
            self._hour = hour
            self._file = (self._dir / f"{hour}.log").open("a", encoding="utf-8")
        return self._file
