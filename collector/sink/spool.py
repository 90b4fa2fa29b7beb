"""The spool: batches InfluxDB could not take, on disk, until it can.

Append-only segment files plus a committed read position, in ``<storage.dir>/spool/``:

    00000000000000000001.seg   records: <length u32><crc32 u32><lines u32><body>,
                               body: each line as <length u32><line bytes> (a string
                               field may hold a newline, so lines are framed, not split)
    00000000000000000002.seg   a new segment when the current one passes segment_bytes
    commit                     {"segment": 1, "offset": 123}: where replay starts

An append is fsynced before it returns, so a batch in the spool survives a crash and its
messages may be acknowledged. Replay reads records in order from the committed position;
a segment is deleted once read past. The spool is bounded: ``append`` waits for room.

What is on disk is not trusted. On open every record is checked against its CRC: a torn
record at the tail (a crash during an append, never acknowledged) is cut off; a damaged
record elsewhere (a flipped byte) is skipped, its bytes copied to ``damaged-<seg>-<offset>
.bin`` and the readings it held named in the log, and every intact record after it is kept.
A ``commit`` that is unreadable, or whose offset does not fall on a record boundary, is not
believed: replay starts at the record boundary at or before it (or at the segment's start),
since writing a point InfluxDB already has only overwrites it. A file that is not ours is
left alone, with a warning. An append that fails (disk full) raises :class:`StorageError`.

Plain synchronous file I/O: a batch is at most a few MB and fsync is quick; the async
wrapper in ``durable.py`` decides when to call it.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from collector.errors import StorageError
from collector.files import set_aside, write_atomic

log = logging.getLogger(__name__)

HEADER = struct.Struct("<III")
SEGMENT_BYTES = 64 * 2**20
_SEGMENT_NAME = re.compile(r"^\d{20}\.seg$")
_OURS = re.compile(r"^(\d{20}\.seg|commit|commit\.tmp|damaged-.*\.bin|.*\.bad-\d+)$")


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
        #: Offsets of the intact, unread records of each segment, in order.
        self._records: dict[int, list[int]] = {}
        #: Damaged records found on open.
        self.damaged_records = 0

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
        for path in self._dir.iterdir():
            if not _OURS.match(path.name):
                log.warning("spool %s: %s is not one of ours; left alone", self._dir,
                            path.name)
        self._segments = sorted(int(p.name[:20]) for p in self._dir.iterdir()
                                if _SEGMENT_NAME.match(p.name))
        self._read = self._committed()
        for segment in [s for s in self._segments if s < self._read[0]]:
            self._path(segment).unlink()  # read past before a crash, not yet deleted
        self._segments = [s for s in self._segments if s >= self._read[0]]
        if self._segments and self._read[0] not in self._segments:
            self._read = (self._segments[0], 0)
        for segment in self._segments:
            self._scan(segment)
        if self.lines:
            log.warning("spool %s holds %d lines (%d bytes) to replay", self._dir, self.lines,
                        self.size)

    def _committed(self) -> tuple[int, int]:
        """Where replay starts: the commit file, if it can be believed."""
        first = (self._segments[0], 0) if self._segments else (0, 0)
        commit = self._dir / "commit"
        if not commit.exists():
            return first
        try:
            saved = json.loads(commit.read_bytes())
            segment, offset = saved["segment"], saved["offset"]
            if not (isinstance(segment, int) and isinstance(offset, int)
                    and segment >= 0 and offset >= 0):
                raise ValueError(f"not a position: {saved!r}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            set_aside(commit, f"{type(exc).__name__}: {exc}; replaying every segment from "
                      "its start (InfluxDB overwrites what it already has)")
            return first
        return segment, offset

    def _scan(self, segment: int) -> None:
        path = self._path(segment)
        data = path.read_bytes()
        records: list[int] = []
        at = 0
        while at < len(data):
            size = _record_size(data, at)
            if size:
                records.append(at)
                at += size
                continue
            resume = _next_record(data, at)
            if resume is None and _whole(data, at):
                resume = len(data)    # the last record, complete but damaged: not torn
            if resume is None:
                break                 # nothing intact after it: a torn tail
            self._damaged(segment, data, at, resume)
            at = resume
        if at < len(data):
            log.warning("spool segment %s: cutting a torn record at byte %d (%d bytes; never "
                        "acknowledged, the broker still has its messages)", path, at,
                        len(data) - at)
            with path.open("r+b") as handle:
                handle.truncate(at)
                os.fsync(handle.fileno())
        self._sizes[segment] = at
        start = 0
        if segment == self._read[0]:
            start = self._believed(segment, records, self._read[1], at)
            self._read = (segment, records[start] if start < len(records) else at)
        unread = records[start:]
        self._records[segment] = unread
        self.lines += sum(HEADER.unpack_from(data, offset)[2] for offset in unread)

    @staticmethod
    def _believed(segment: int, records: list[int], offset: int, end: int) -> int:
        """The index of the first unread record for a committed ``offset``: the record at
        it, or (when it falls inside one, or past the end) one that replays too much rather
        than too little."""
        i = bisect.bisect_left(records, offset)
        if offset == end or (i < len(records) and records[i] == offset):
            return i
        start, where = (0, "past the end") if offset > end else (max(i - 1, 0),
                                                                   "inside a record")
        log.warning("spool commit offset %d of segment %d is %s: replaying from byte %d "
                    "(InfluxDB overwrites what it already has)", offset, segment, where,
                    records[start] if records else 0)
        return start

    def _damaged(self, segment: int, data: bytes, at: int, resume: int) -> None:
        """Keep a damaged record's bytes aside and name what it held."""
        self.damaged_records += 1
        kept = self._dir / f"damaged-{segment:020d}-{at}.bin"
        try:
            if not kept.exists():
                kept.write_bytes(data[at:resume])
        except OSError as exc:        # a full disk: still start, and say so
            log.error("spool: could not keep the damaged bytes aside (%s)", exc)
        named = _legible(data[at:resume])
        log.error("spool segment %d: %d bytes at offset %d fail their checksum; the readings "
                  "in them cannot be recovered (bytes kept in %s). Legible: %s", segment,
                  resume - at, at, kept.name, "; ".join(named[:20]) or "none" +
                  (f" ... and {len(named) - 20} more" if len(named) > 20 else ""))

    # --- writing -----------------------------------------------------------------------

    def append(self, body: bytes, lines: int) -> None:
        """Append one record (``encode_lines``) and fsync it. The caller checks :meth:`fits`.

        Raises:
            StorageError: it could not be written (disk full, read-only); the spool is as
                it was before the call.
        """
        if not self._segments or self._sizes[self._segments[-1]] >= self._segment_bytes:
            new = self._segments[-1] + 1 if self._segments else 1
            self._segments.append(new)
            self._sizes[new] = 0
            self._records[new] = []
            if len(self._segments) == 1:
                self._read = (new, 0)
        segment = self._segments[-1]
        at = self._sizes[segment]
        record = HEADER.pack(len(body), zlib.crc32(body), lines) + body
        try:
            with self._path(segment).open("ab") as handle:
                handle.write(record)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            self._truncate(segment, at)
            raise StorageError(f"spool {self._dir}: {exc}") from exc
        self._records[segment].append(at)
        self._sizes[segment] += len(record)
        self.lines += lines

    def _truncate(self, segment: int, size: int) -> None:
        # A partial append must not stay in front of the next one.
        try:
            with self._path(segment).open("r+b") as handle:
                handle.truncate(size)
        except OSError:
            pass      # the next open cuts it as a torn tail

    # --- replay ------------------------------------------------------------------------

    def head(self) -> Record | None:
        """The oldest record not yet committed, or None."""
        segment, offset = self._read
        if self.empty or segment not in self._sizes:
            return None
        records = self._records.get(segment, [])
        i = bisect.bisect_left(records, offset)
        if i == len(records):
            return None
        offset = records[i]           # past a damaged record, when one lies in between
        with self._path(segment).open("rb") as handle:
            handle.seek(offset)
            length, _crc, lines = HEADER.unpack(handle.read(HEADER.size))
            body = handle.read(length)
        return Record(segment, offset, offset + HEADER.size + length, lines, body)

    def commit(self, record: Record) -> None:
        """Mark ``record`` replayed: move the read position past it, durably.

        Raises:
            OSError: the position could not be saved; nothing changed.
        """
        records = self._records.get(record.segment, [])
        rest = records[1:] if records and records[0] == record.offset else records
        position = (record.segment, record.next_offset)
        at_end = not rest and record.next_offset >= self._sizes[record.segment]
        if at_end and record.segment != self._segments[-1]:
            position = (self._segments[self._segments.index(record.segment) + 1], 0)
        self._save(position)
        self._records[record.segment] = rest
        self.lines -= record.lines
        if position[0] != record.segment:
            self._path(record.segment).unlink()
            self._segments.remove(record.segment)
            del self._sizes[record.segment]
            self._records.pop(record.segment, None)
        elif at_end and self.empty:
            self._reset()

    def _reset(self) -> None:
        # Fully replayed: start the next outage from a fresh segment.
        for segment in self._segments:
            self._path(segment).unlink()
        self._segments.clear()
        self._sizes.clear()
        self._records.clear()
        (self._dir / "commit").unlink(missing_ok=True)
        self._read = (0, 0)

    def _save(self, position: tuple[int, int]) -> None:
        write_atomic(self._dir / "commit",
                     json.dumps({"segment": position[0], "offset": position[1]}).encode())
        self._read = position

    def _path(self, segment: int) -> Path:
        return self._dir / f"{segment:020d}.seg"


def _record_size(data: bytes, at: int) -> int:
    """The size of the intact record at ``at``, or 0 when there is none there."""
    if at + HEADER.size > len(data):
        return 0
    length: int
    crc: int
    length, crc, _lines = HEADER.unpack_from(data, at)
    end = at + HEADER.size + length
    if end > len(data) or zlib.crc32(data[at + HEADER.size:end]) != crc:
        return 0
    return HEADER.size + length


def _whole(data: bytes, at: int) -> bool:
    """True when the record at ``at`` ends exactly at the end of ``data`` (so it was
    written whole and damaged later, not torn by a crash during its append)."""
    return at + HEADER.size <= len(data) and \
        at + HEADER.size + HEADER.unpack_from(data, at)[0] == len(data)


def _next_record(data: bytes, at: int) -> int | None:
    """Where the next intact record after a damaged one at ``at`` starts, or None.

    A flipped byte in a body leaves the length intact: the record after it is where the
    length says. Otherwise every later offset is tried (slow, but only ever on damage)."""
    if at + HEADER.size <= len(data):
        length: int = HEADER.unpack_from(data, at)[0]
        after = at + HEADER.size + length
        if after < len(data) and _record_size(data, after):
            return after
    for candidate in range(at + 1, len(data) - HEADER.size + 1):
        if _record_size(data, candidate):
            return candidate
    return None


_DEVICE = re.compile(rb"(?:^|,)device=([^,\s]+)")


def _legible(raw: bytes) -> list[str]:
    """What can still be read of a damaged record: 'measurement device=... ts' per line."""
    out = []
    body = raw[HEADER.size:]
    at = 0
    while at + LINE.size <= len(body):
        (length,) = LINE.unpack_from(body, at)
        at += LINE.size
        if length > len(body) - at:
            break
        line = body[at:at + length]
        at += length
        measurement = line.split(b",", 1)[0].decode("utf-8", "replace")
        device = _DEVICE.search(line)
        stamp = line.rsplit(b" ", 1)[-1].decode("utf-8", "replace")
        name = device.group(1).decode("utf-8", "replace") if device else "?"
        out.append(f"{measurement} device={name} ts={stamp}")
    return out
