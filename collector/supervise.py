"""Side jobs under a supervisor: none of them can stop ingest.

The KPI job, the health watch, the self-metrics reporter and the snapshots are useful, not
essential. Each runs in a loop of its own; if one raises, the failure is logged with its
traceback, counted (``failures``, in the self-metrics as ``job_failures_<name>``) and the
job started again after a backoff that doubles up to ``max_s``. Only cancellation ends them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Supervisor:
    """Runs side jobs and restarts them when they fail."""

    def __init__(self, min_s: float = 1.0, max_s: float = 60.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._min_s = min_s
        self._max_s = max_s
        self._sleep = sleep
        #: Failures by job name since start.
        self.failures: Counter[str] = Counter()

    async def run(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` until it returns; restart it with backoff whenever it raises."""
        delay = self._min_s
        while True:
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures[name] += 1
                log.exception("side job %r failed (%d times so far); ingest goes on, the job "
                              "restarts in %.0f s", name, self.failures[name], delay)
            await self._sleep(delay)
            delay = min(delay * 2, self._max_s)
