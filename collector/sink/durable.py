"""Durable delivery: a batch is written to InfluxDB, or fsynced to the spool until it can be.

    batch ──> spool empty? ──yes──> try InfluxDB ──ok──> done
                  │no                    │outage (network, 5xx, 429, 401/403)
                  └──────────> spool ◄───┘
                                 └──> replayer: oldest first, retried with backoff

While the spool holds anything, new batches join it behind the old ones, so replay keeps the
order in which readings arrived. ``deliver`` returns only when the batch is durable: that is
when the messages it came from may be acknowledged. When the spool is full ``deliver``
waits, which stops the batcher, which stops the source reading the broker.
"""

from __future__ import annotations

import asyncio
import logging

from collector.errors import AuthWriteError, RetryableWriteError
from collector.metrics import Counters
from collector.sink.retry import RetryingWriter
from collector.sink.spool import Spool, encode_lines

log = logging.getLogger(__name__)


class DurableSink:
    """Direct writes while InfluxDB takes them; the spool and its replayer when it does not."""

    def __init__(self, writer: RetryingWriter, spool: Spool, counters: Counters) -> None:
        self._writer = writer
        self._spool = spool
        self._counters = counters
        self._work = asyncio.Event()   # the spool has something to replay
        self._room = asyncio.Event()   # the replayer freed space

    async def deliver(self, lines: list[bytes]) -> None:
        """Make ``lines`` durable: written (or dead-lettered line by line) or spooled."""
        if self._spool.empty:
            try:
                await self._writer.try_write(lines)
                return
            except (RetryableWriteError, AuthWriteError) as exc:
                self._counters.auth_failing = isinstance(exc, AuthWriteError)
                log.warning("InfluxDB cannot take a batch of %d lines (%s); spooling it",
                            len(lines), exc)
        await self._append(lines)

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
            self._spool.commit(record)
            self._counters.replayed += record.lines
            self._room.set()
            if self._spool.empty:
                log.info("spool replayed to empty")
