"""Retrying, splitting and bisecting around a fake writer."""

from __future__ import annotations

import asyncio

from collector.errors import (
    AuthWriteError,
    BadLinesError,
    BatchTooLargeError,
    RetryableWriteError,
)
from collector.metrics import Counters
from collector.settings import InfluxSettings
from collector.sink.retry import RetryingWriter, backoff

SETTINGS = InfluxSettings(retry_min_s=0.1, retry_max_s=5.0)


class FakeWriter:
    """Fails as scripted, then refuses any batch containing a poisoned line."""

    def __init__(self, failures: list[Exception], poison: set[bytes] = frozenset(),
                 max_lines: int = 10**9) -> None:
        self.failures = failures
        self.poison = poison
        self.max_lines = max_lines
        self.written: list[bytes] = []
        self.calls = 0

    async def write(self, body: bytes) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        lines = body.split(b"\n")
        if len(lines) > self.max_lines:
            raise BatchTooLargeError("too large", 413)
        if self.poison & set(lines):
            raise BadLinesError("unable to parse", 400)
        self.written.extend(lines)


def run(writer: FakeWriter, lines: list[bytes]) -> tuple[list[float], list[tuple[bytes, str]],
                                                         Counters]:
    sleeps: list[float] = []
    bad: list[tuple[bytes, str]] = []
    counters = Counters()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    retrying = RetryingWriter(writer, SETTINGS, lambda line, why: bad.append((line, why)),
                              counters, sleep=sleep)
    asyncio.run(retrying.write(lines))
    return sleeps, bad, counters


LINES = [f"m v={i}.0 {i}".encode() for i in range(100)]


def test_retries_until_written_honouring_retry_after() -> None:
    writer = FakeWriter([RetryableWriteError("down"), RetryableWriteError("busy", 429, 3.0),
                         AuthWriteError("no", 401)])
    sleeps, bad, counters = run(writer, LINES)
    assert writer.written == LINES and bad == []
    assert 0.05 <= sleeps[0] <= 0.1, "first backoff is the minimum, jittered"
    assert sleeps[1] == 3.0, "Retry-After wins"
    assert sleeps[2] == SETTINGS.retry_max_s, "auth failures retry at the slowest pace"
    assert counters.write_retries == 3 and counters.written == 100


def test_bisect_sets_aside_only_the_bad_lines() -> None:
    writer = FakeWriter([], poison={LINES[17], LINES[80]})
    _, bad, counters = run(writer, LINES)
    assert sorted(writer.written) == sorted(set(LINES) - {LINES[17], LINES[80]})
    assert bad == [(LINES[17], "unable to parse"), (LINES[80], "unable to parse")]
    assert counters.write_rejected == 2
    assert writer.calls < 30, "bisection, not one request a line"


def test_413_splits_until_the_server_takes_it() -> None:
    writer = FakeWriter([], max_lines=30)
    _, bad, _ = run(writer, LINES)
    assert sorted(writer.written) == sorted(LINES) and bad == []


def test_backoff_grows_and_is_capped() -> None:
    assert all(0.05 <= backoff(0, 0.1, 5) <= 0.1 for _ in range(50))
    assert all(0.4 <= backoff(3, 0.1, 5) <= 0.8 for _ in range(50))
    assert all(2.5 <= backoff(40, 0.1, 5) <= 5 for _ in range(50))
