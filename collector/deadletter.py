"""Dead letters: every refused message or object, kept on disk with its reason.

Replayed records are not rewritten (a running collector may be appending): their byte
offsets are appended to ``deadletters.replayed``, and listing leaves them out.

One JSON object a line in ``<storage.dir>/deadletters.jsonl``:
``{"received": "...Z", "received_ms": 0, "topic": "...", "reason": "...", "detail": "...",
"payload": "<text>"}`` (``payload_b64`` instead when the bytes are not UTF-8). Appending
is bounded by ``storage.deadletter_max_mb``; past it, refusals are counted and logged, not
kept, so a flood of garbage cannot fill the disk.

Damage: a crash in the middle of an append leaves a torn line; the next append starts on a
fresh line, and reading skips (and counts) any line that is not a record, so one bad line
never hides the others. When the file cannot be written (disk full), ``add`` raises
:class:`StorageError` and the caller holds the message unacknowledged until it can.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from collector.errors import StorageError
from collector.records import Reject

log = logging.getLogger(__name__)

FILENAME = "deadletters.jsonl"
REPLAYED = "deadletters.replayed"
#: The topic of a record that is a line InfluxDB refused, not a device's message.
INFLUX_TOPIC = "influx:write"


def to_json(reject: Reject) -> bytes:
    """One dead-letter record as a JSON line (with its newline)."""
    record: dict[str, Any] = {
        "received": datetime.fromtimestamp(reject.received_ms / 1000, UTC)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "received_ms": reject.received_ms,
        "topic": reject.topic,
        "reason": reject.reason,
        "detail": reject.detail,
    }
    try:
        record["payload"] = reject.payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_b64"] = base64.b64encode(reject.payload).decode("ascii")
    return orjson.dumps(record) + b"\n"


def from_json(line: bytes) -> Reject:
    """Read back one record written by :func:`to_json`.

    Raises:
        ValueError, KeyError, TypeError: not such a record.
    """
    record = orjson.loads(line)
    if not isinstance(record, dict):
        raise TypeError("not a record")
    if "payload_b64" in record:
        payload = base64.b64decode(record["payload_b64"])
    else:
        payload = record["payload"].encode("utf-8")
    return Reject(record["topic"], payload, record["reason"], record["detail"],
                  record["received_ms"])


class DeadLetterStore:
    """Appends refusals to the dead-letter file; reads them back for ``sct deadletter``."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.path = directory / FILENAME
        self._max_bytes = max_bytes
        self._file: BinaryIO | None = None
        self._size = 0
        #: Refusals counted but not kept because the store was at its bound.
        self.dropped = 0
        #: Why the last append failed (disk full, ...), or None while appends succeed.
        self.failing: str | None = None
        #: Lines skipped by the last read because they are not records (torn, damaged).
        self.unreadable = 0

    def open(self) -> None:
        """Open for appending.

        Raises:
            StorageError: the file cannot be opened or its torn tail closed off (a full or
                read-only disk); ``add`` tries again.
        """
        try:
            self._open()
        except OSError as exc:
            self.failing = f"{type(exc).__name__}: {exc}"
            self.close()
            raise StorageError(f"dead letters {self.path}: {exc}") from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._size = self._file.tell()
        if self._size:
            with self.path.open("rb") as handle:
                handle.seek(-1, 2)
                torn = handle.read(1) != b"\n"
            if torn:
                # A crash in the middle of an append: the next record starts on its own line.
                log.warning("dead letters %s end in a torn line; it is left as it is and "
                            "skipped when read", self.path)
                self._file.write(b"\n")
                self._file.flush()
                self._size += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def add(self, reject: Reject) -> bool:
        """Keep one refusal; False when the store is full and it was only counted.

        Raises:
            StorageError: the file cannot be written (disk full, read-only).
        """
        try:
            return self._add(reject)
        except OSError as exc:
            self.failing = f"{type(exc).__name__}: {exc}"
            self.close()      # reopened (and a torn tail closed off) by the next add
            raise StorageError(f"dead letters {self.path}: {exc}") from exc

    def _add(self, reject: Reject) -> bool:
        if self._file is None:
            self._open()
        assert self._file is not None
        line = to_json(reject)
        if self._size + len(line) > self._max_bytes:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("dead-letter store %s is full (%d bytes); %d refusals not kept",
                          self.path, self._max_bytes, self.dropped)
            return False
        self._file.write(line)
        self._file.flush()
        self._size += len(line)
        self.failing = None
        return True

    def read(self, reason: str | None = None) -> Iterator[Reject]:
        """Every kept refusal not yet replayed, oldest first, optionally only ``reason``."""
        for _offset, reject in self.records(reason):
            yield reject

    def records(self, reason: str | None = None) -> Iterator[tuple[int, Reject]]:
        """(offset, refusal) of every record not yet replayed, oldest first."""
        if not self.path.exists():
            return
        replayed = self._replayed()
        offset = 0
        self.unreadable = 0
        with self.path.open("rb") as handle:
            for line in handle:
                at, offset = offset, offset + len(line)
                if not line.endswith(b"\n"):
                    break  # being appended right now by a running collector
                if at in replayed or not line.strip():
                    continue
                try:
                    reject = from_json(line)
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.unreadable += 1    # torn by a crash, or damaged: the rest still count
                    continue
                if reason is None or reject.reason == reason:
                    yield at, reject

    def mark_replayed(self, offsets: list[int]) -> None:
        """Leave these records out from now on; fsynced before it returns."""
        with (self.path.parent / REPLAYED).open("a") as handle:
            handle.write("".join(f"{offset}\n" for offset in offsets))
            handle.flush()
            os.fsync(handle.fileno())

    def _replayed(self) -> set[int]:
        path = self.path.parent / REPLAYED
        if not path.exists():
            return set()
        return {int(line) for line in path.read_text().split() if line.isdigit()}
