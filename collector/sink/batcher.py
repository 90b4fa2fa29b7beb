"""Batcher: lines in, batches out to the writers, on batch size or batch age.

Bounded: at most ``max_pending_batches`` full batches wait for a writer; past that
``add`` waits, which stops the pipeline, which stops the source reading the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from collector.settings import InfluxSettings

WriteBatch = Callable[[list[bytes]], Awaitable[None]]


class Batcher:
    """Collects encoded lines and hands full or old batches to ``writers`` writer tasks."""

    def __init__(self, settings: InfluxSettings, write: WriteBatch, writers: int = 2) -> None:
        self._settings = settings
        self._write = write
        self._writers = writers
        self._lines: list[bytes] = []
        self._started = 0.0
        self._queue: asyncio.Queue[list[bytes]] = asyncio.Queue(settings.max_pending_batches)
        self._queued = 0  # lines in batches handed over and not yet written

    @property
    def pending(self) -> int:
        """Lines accepted but not yet written (building, queued or being written)."""
        return len(self._lines) + self._queued

    async def add(self, line: bytes) -> None:
        """Add one line; waits when every writer is busy and the queue is full."""
        if not self._lines:
            self._started = time.monotonic()
        self._lines.append(line)
        if len(self._lines) >= self._settings.batch_size:
            await self._cut()

    async def run(self) -> None:
        """The age timer and the writer tasks; runs until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._timer())
            for _ in range(self._writers):
                group.create_task(self._writer())

    async def drain(self) -> None:
        """Hand over what is building and wait until every queued batch is written."""
        await self._cut()
        await self._queue.join()

    async def _cut(self) -> None:
        if self._lines:
            batch, self._lines = self._lines, []
            self._queued += len(batch)
            await self._queue.put(batch)

    async def _timer(self) -> None:
        interval = self._settings.flush_interval_s
        while True:
            await asyncio.sleep(interval / 4)
            if self._lines and time.monotonic() - self._started >= interval:
                await self._cut()

    async def _writer(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._write(batch)
            finally:
                self._queued -= len(batch)
                self._queue.task_done()
