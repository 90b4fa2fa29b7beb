"""The spool: batches InfluxDB could not take, on disk, until it can.

Append-only segment files plus a committed read position, in ``<storage.dir>/spool/``:

    00000000000000000001.seg   records: <length u32><crc32 u32><lines u32><body>,
                               body: each line as <length u32><line bytes> (a string
                               field may hold a newline, so lines are framed, not split)
    00000000000000000002.seg   a new segment when the current one passes segment_bytes
    commit                     {"segment": 1, "offset": 123}: where replay starts

An append is fsynced before it returns, so a batch in the spool survives a crash and its
messages may be acknowledged. Replay reads records in order from the committed position;
a segment is deleted once read past. On open, a torn record at the tail (a crash during an
append, never acknowledged) is cut off. The spool is bounded: ``append`` waits for room.

Plain synchronous file I/O: a batch is at most a few MB and fsync is quick; the async
wrapper in ``durable.py`` decides when to call it.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HEADER = struct.Struct("<III")
SEGMENT_BYTES = 64 * 2**20


LINE = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Record:
    """One spooled batch and where the record after it starts."""

    segment: int
    offset: int
    next_offset: int
    lines: int
    body: bytes

    def decode(self) -> list[bytes]:
        """The batch's lines."""
        out, at = [], 0
        while at < len(self.body):
            (length,) = LINE.unpack_from(self.body, at)
            at += LINE.size
            out.append(self.body[at:at + length])
            at += length
        return out


def encode_lines(lines: list[bytes]) -> bytes:
    """Frame lines for a record's body."""
    return b"".join(LINE.pack(len(line)) + line for line in lines)


class Spool:
    """A bounded on-disk FIFO of batches."""

    def __init__(self, directory: Path, max_bytes: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self._dir = directory
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._segments: list[int] = []
        self._read = (0, 0)           # committed (segment, offset)
        self._sizes: dict[int, int] = {}
        self.lines = 0                # lines in unread records
        self._line_counts: dict[tuple[int, int], int] = {}

    # --- state -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes not yet replayed."""
        if not self._segments:
            return 0
        return sum(self._sizes.values()) - (self._read[1] if self._read[0] in self._sizes
                                            else 0)

    @property
    def empty(self) -> bool:
        return self.lines == 0

    def fits(self, body: bytes) -> bool:
        """True when a record of ``body`` can be appended within the bound."""
        return self.empty or self.size + len(body) + HEADER.size <= self.max_bytes

    # --- opening -----------------------------------------------------------------------

    def open(self) -> None:
        """Read the folder: segments, committed position, and the records still to replay."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(int(p.stem) for p in self._dir.glob("*.seg"))
        commit = self._dir / "commit"
        if commit.exists():
            saved = json.loads(commit.read_text())
            self._read = (saved["segment"], saved["offset"])
        elif self._segments:
            self._read = (self._segments[0], 0)
        for segment in [s for s in self._segments if s < self._read[0]]:
            self._path(segment).unlink()  # read past before a crash, not yet deleted
        self._segments = [s for s in self._segments if s >= self._read[0]]
        for segment in self._segments:
            self._scan(segment)
        if self.lines:
            log.warning("spool %s holds %d lines (%d bytes) to replay", self._dir, self.lines,
                        self.size)

    def _scan(self, segment: int) -> None:
        path = self._path(segment)
        data = path.read_bytes()
        offset = self._read[1] if segment == self._read[0] else 0
        good = offset
        while good + HEADER.size <= len(data):
            length, crc, lines = HEADER.unpack_from(data, good)
            body = data[good + HEADER.size: good + HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            self._line_counts[(segment, good)] = lines
            self.lines += lines
            good += HEADER.size + length
        if good < len(data):
            log.warning("spool segment %s: cutting a torn record at byte %d", path, good)
            with path.open("r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())
        self._sizes[segment] = good

    # --- writing -----------------------------------------------------------------------

    def append(self, body: bytes, lines: int) -> None:
        """Append one record (``encode_lines``) and fsync it. The caller checks :meth:`fits`."""
        if not self._segments or self._sizes[self._segments[-1]] >= self._segment_bytes:
            self._segments.append(self._segments[-1] + 1 if self._segments else 1)
            self._sizes[self._segments[-1]] = 0
            if len(self._segments) == 1:
                self._read = (self._segments[0], 0)
        segment = self._segments[-1]
        record = HEADER.pack(len(body), zlib.crc32(body), lines) + body
        with self._path(segment).open("ab") as handle:
            handle.write(record)
            handle.flush()
            os.fsync(handle.fileno())
        self._line_counts[(segment, self._sizes[segment])] = lines
        self._sizes[segment] += len(record)
        self.lines += lines

    # --- replay ------------------------------------------------------------------------

    def head(self) -> Record | None:
        """The oldest record not yet committed, or None."""
        segment, offset = self._read
        if self.empty or segment not in self._sizes:
            return None
        if offset >= self._sizes[segment]:
            return None
        with self._path(segment).open("rb") as handle:
            handle.seek(offset)
            length, _crc, lines = HEADER.unpack(handle.read(HEADER.size))
            body = handle.read(length)
        return Record(segment, offset, offset + HEADER.size + length, lines, body)

    def commit(self, record: Record) -> None:
        """Mark ``record`` replayed: move the read position past it, durably."""
        self.lines -= self._line_counts.pop((record.segment, record.offset), record.lines)
        position = (record.segment, record.next_offset)
        at_end = record.next_offset >= self._sizes[record.segment]
        if at_end and record.segment != self._segments[-1]:
            position = (self._segments[1], 0)
        self._save(position)
        if position[0] != record.segment:
            self._path(record.segment).unlink()
            self._segments.remove(record.segment)
            del self._sizes[record.segment]
        elif at_end and self.empty:
            self._reset()

    def _reset(self) -> None:
        # Fully replayed: start the next outage from a fresh segment.
        for segment in self._segments:
            self._path(segment).unlink()
        self._segments.clear()
        self._sizes.clear()
        (self._dir / "commit").unlink(missing_ok=True)
        self._read = (0, 0)

    def _save(self, position: tuple[int, int]) -> None:
        self._read = position
        temporary = self._dir / "commit.tmp"
        with temporary.open("w") as handle:
            json.dump({"segment": position[0], "offset": position[1]}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self._dir / "commit")

    def _path(self, segment: int) -> Path:
        return self._dir / f"{segment:020d}.seg"
