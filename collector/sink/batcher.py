"""Batcher: lines in, batches out to the writers, on batch size or batch age.

Each line may carry the :class:`Claim` of the message it came from; the claim is released
once the batch is durable (``write`` returned), which lets the source acknowledge it.

Bounded: at most ``max_pending_batches`` full batches wait for a writer; past that
``add`` waits, which stops the pipeline, which stops the source reading the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from collector.records import Claim
from collector.settings import InfluxSettings

WriteBatch = Callable[[list[bytes]], Awaitable[None]]
Batch = tuple[list[bytes], list[Claim]]


class Batcher:
    """Collects encoded lines and hands full or old batches to ``writers`` writer tasks."""

    def __init__(self, settings: InfluxSettings, write: WriteBatch, writers: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._write = write
        self._writers = writers
        self._lines: list[bytes] = []
        self._claims: list[Claim] = []
        self._started = 0.0
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(settings.max_pending_batches)
        self._queued = 0  # lines in batches handed over and not yet written

    @property
    def pending(self) -> int:
        """Lines accepted but not yet durable (building, queued or being written)."""
        return len(self._lines) + self._queued

    async def add(self, line: bytes, claim: Claim | None = None) -> None:
        """Add one line; waits when every writer is busy and the queue is full."""
        if not self._lines:
            self._started = self._clock()
        self._lines.append(line)
        if claim is not None:
            self._claims.append(claim)
        if len(self._lines) >= self._settings.batch_size:
            await self._cut()

    async def add_many(self, lines: Sequence[bytes], claim: Claim) -> None:
        """The lines of one message; ``claim`` is held once for each batch they land in
        (not once a line: an array of 50 readings is one hold, not 50)."""
        size = self._settings.batch_size
        at = 0
        while at < len(lines):
            if not self._lines:
                self._started = self._clock()
            chunk = lines[at:at + size - len(self._lines)]
            self._lines.extend(chunk)
            claim.hold()
            self._claims.append(claim)
            at += len(chunk)
            if len(self._lines) >= size:
                await self._cut()

    async def run(self) -> None:
        """The age timer and the writer tasks; runs until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._timer())
            for _ in range(self._writers):
                group.create_task(self._writer())

    async def flush_held(self, now: bool) -> float:
        """The source has stalled with messages unacknowledged: hand over what is building
        when it holds their claims and either ``now`` (the broker's known window is full) or
        it is at least ``influx.min_batch_age_ms`` old. 0 when done (or nothing to do), else
        the seconds until it will be old enough.

        The minimum age keeps a live stream that merely pauses from being written a few lines
        at a time; a broker that waits for acknowledgements waits that long at most."""
        if not self._claims:
            return 0.0
        wait = self._settings.min_batch_age_ms / 1000 - (self._clock() - self._started)
        if now or wait <= 0:
            await self._cut()
            return 0.0
        return wait

    async def drain(self) -> None:
        """Hand over what is building and wait until every queued batch is written."""
        await self._cut()
        await self._queue.join()

    async def _cut(self) -> None:
        if self._lines:
            batch = (self._lines, self._claims)
            self._lines, self._claims = [], []
            self._queued += len(batch[0])
            await self._queue.put(batch)

    async def flush_if_old(self) -> None:
        """Hand over what is building when its oldest line waited ``flush_interval_s``."""
        if self._lines and self._clock() - self._started >= self._settings.flush_interval_s:
            await self._cut()

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self._settings.flush_interval_s / 4)
            await self.flush_if_old()

    async def _writer(self) -> None:
        while True:
            lines, claims = await self._queue.get()
            try:
                await self._write(lines)
            finally:
                self._queued -= len(lines)
                self._queue.task_done()
            for claim in claims:
                claim.release()
