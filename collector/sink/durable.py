"""Durable delivery: a batch is written to InfluxDB, or fsynced to the spool until it can be.

    batch ──> spool empty? ──yes──> try InfluxDB ──ok──> done
                  │no                    │outage (network, 5xx, 429, 401/403)
                  └──────────> spool ◄───┘
                                 └──> replayer: oldest first, retried with backoff

While the spool holds anything, new batches join it behind the old ones, so replay keeps the
order in which readings arrived. ``deliver`` returns only when the batch is durable: that is
when the messages it came from may be acknowledged. When the spool is full ``deliver``
waits, which stops the batcher, which stops the source reading the broker.

Disk full is an outage, not a crash: when the spool cannot be written, ``deliver`` does not
return (so nothing is acknowledged and the broker keeps the messages); it tries InfluxDB and
the spool again with backoff until one of them takes the batch. ``holding`` says why
meanwhile, and the collector raises its ``storage_full`` alert from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from collector.errors import AuthWriteError, RetryableWriteError, StorageError
from collector.metrics import Counters
from collector.sink.retry import RetryingWriter, backoff
from collector.sink.spool import Spool, encode_lines

log = logging.getLogger(__name__)


class DurableSink:
    """Direct writes while InfluxDB takes them; the spool and its replayer when it does not."""

    def __init__(self, writer: RetryingWriter, spool: Spool, counters: Counters,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 retry_max_s: float = 30.0) -> None:
        self._writer = writer
        self._spool = spool
        self._counters = counters
        self._sleep = sleep
        self._retry_max_s = retry_max_s
        #: Why a batch is being held (neither InfluxDB nor the spool takes it), or None.
        self.holding: str | None = None
        self._work = asyncio.Event()   # the spool has something to replay
        self._room = asyncio.Event()   # the replayer freed space

    async def deliver(self, lines: list[bytes]) -> None:
        """Make ``lines`` durable: written (or dead-lettered line by line) or spooled."""
        attempt = 0
        while True:
            if self._spool.empty:
                try:
                    await self._writer.try_write(lines)
                    self.holding = None
                    return
                except (RetryableWriteError, AuthWriteError) as exc:
                    if not attempt:
                        log.warning("InfluxDB cannot take a batch of %d lines (%s); spooling "
                                    "it", len(lines), exc)
            try:
                await self._append(lines)
                if attempt:
                    log.info("the spool takes batches again")
                self.holding = None
                return
            except StorageError as exc:
                self.holding = str(exc)
                # Nothing is acknowledged meanwhile: the broker keeps the messages.
                delay = backoff(attempt, 0.5, self._retry_max_s)
                attempt += 1
                log.error("%s: neither InfluxDB nor the spool can take a batch of %d lines; "
                          "holding it (unacknowledged), trying again in %.1f s", exc,
                          len(lines), delay)
                await self._sleep(delay)

    async def _append(self, lines: list[bytes]) -> None:
        body = encode_lines(lines)
        while not self._spool.fits(body):
            self._room.clear()
            log.warning("spool full (%d bytes): waiting for replay to make room",
                        self._spool.size)
            await self._room.wait()
        self._spool.append(body, len(lines))
        self._counters.spooled += len(lines)
        self._work.set()

    async def replay(self) -> None:
        """Write what the spool holds, oldest first, until cancelled."""
        while True:
            record = self._spool.head()
            if record is None:
                self._work.clear()
                await self._work.wait()
                continue
            await self._writer.write(record.decode())
            try:
                self._spool.commit(record)
            except OSError as exc:
                # The commit file cannot be written (disk full): the record is written and
                # will be written again (overwriting itself) once it can be committed.
                log.error("spool commit failed (%s); retrying", exc)
                await self._sleep(1.0)
                continue
            self._counters.replayed += record.lines
            self._room.set()
            if self._spool.empty:
                log.info("spool replayed to empty")
