"""Retry: a batch is written, or each of its lines is set aside with the server's reason.

The action for each failure (DESIGN habit 6):
- network error, 5xx, 429: wait (the server's Retry-After, else capped exponential backoff
  with jitter) and send the same batch again;
- 413: split the batch in halves and write each;
- 400 / 422: bisect until the bad lines are alone, set each aside with InfluxDB's own
  error text, write the rest;
- 401 / 403 / 404: keep the batch, log an error every time, retry at the slowest pace.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from collector.errors import AuthWriteError, BadLinesError, BatchTooLargeError, RetryableWriteError
from collector.metrics import Counters
from collector.settings import InfluxSettings

log = logging.getLogger(__name__)

BadLine = Callable[[bytes, str], None]


class Writer(Protocol):
    async def write(self, body: bytes) -> None: ...


def backoff(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with jitter: between half and all of ``low * 2**attempt``."""
    ceiling: float = min(high, low * 2.0 ** min(attempt, 30))
    return ceiling * random.uniform(0.5, 1.0)


class RetryingWriter:
    """Wraps a :class:`Writer`: lines are written or set aside; outages are retried or raised.

    ``write`` keeps retrying through an outage; ``try_write`` raises it
    (:class:`RetryableWriteError` or :class:`AuthWriteError`) so the caller can spool.
    """

    def __init__(self, writer: Writer, settings: InfluxSettings, on_bad_line: BadLine,
                 counters: Counters,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._writer = writer
        self._settings = settings
        self._on_bad_line = on_bad_line
        self._counters = counters
        self._sleep = sleep
        #: InfluxDB answers 401 / 403 (its last answer, read by the health rules).
        self.auth_failing = False
        #: ``time.time()`` of the last successful write, or None.
        self.last_write: float | None = None

    async def write(self, lines: list[bytes]) -> None:
        """Write ``lines``; retries until written, splitting out lines the server refuses."""
        attempt = 0
        while True:
            try:
                await self.try_write(lines)
                return
            except RetryableWriteError as exc:
                attempt += 1
                await self._wait(exc.retry_after, attempt, exc, logging.WARNING)
            except AuthWriteError as exc:
                attempt += 1
                await self._wait(self._settings.retry_max_s, attempt, exc, logging.ERROR)

    async def try_write(self, lines: list[bytes]) -> None:
        """Write ``lines`` once, splitting out lines the server refuses.

        Raises:
            RetryableWriteError, AuthWriteError: InfluxDB cannot take them now.
        """
        try:
            await self._writer.write(b"\n".join(lines))
        except (BatchTooLargeError, BadLinesError) as exc:
            await self._split(lines, exc)
            return
        except AuthWriteError:
            self.auth_failing = True
            raise
        except RetryableWriteError:
            self.auth_failing = False
            raise
        self._counters.written += len(lines)
        self._counters.batches += 1
        self.auth_failing = False
        self.last_write = time.time()

    async def _split(self, lines: list[bytes], exc: BatchTooLargeError | BadLinesError) -> None:
        if len(lines) == 1:
            self._counters.write_rejected += 1
            self._on_bad_line(lines[0], str(exc))
            return
        half = len(lines) // 2
        await self.try_write(lines[:half])
        await self.try_write(lines[half:])

    async def _wait(self, hint: float | None, attempt: int, exc: Exception, level: int) -> None:
        s = self._settings
        delay = hint if hint is not None else backoff(attempt - 1, s.retry_min_s, s.retry_max_s)
        self._counters.write_retries += 1
        log.log(level, "write failed (attempt %d): %s; keeping the batch, retrying in %.1f s",
                attempt, exc, delay)
        await self._sleep(delay)
