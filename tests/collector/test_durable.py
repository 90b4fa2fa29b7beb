"""Outage -> spool -> replay in order, with a fake InfluxDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.errors import AuthWriteError, RetryableWriteError
from collector.metrics import Counters
from collector.settings import InfluxSettings
from collector.sink.durable import DurableSink
from collector.sink.retry import RetryingWriter
from collector.sink.spool import Spool


class Flaky:
    def __init__(self) -> None:
        self.up = True
        self.written: list[bytes] = []

    async def write(self, body: bytes) -> None:
        if not self.up:
            raise RetryableWriteError("connection refused")
        self.written.extend(body.split(b"\n"))


def test_outage_spools_then_replays_in_order(tmp_path: Path) -> None:
    async def go() -> None:
        influx, counters = Flaky(), Counters()
        spool = Spool(tmp_path, 10**6)
        spool.open()
        writer = RetryingWriter(influx, InfluxSettings(retry_min_s=0.01, retry_max_s=0.02),
                                lambda line, why: None, counters)
        sink = DurableSink(writer, spool, counters)
        replayer = asyncio.create_task(sink.replay())
        await sink.deliver([b"a 1", b"a 2"])
        influx.up = False
        await sink.deliver([b"b 1"])          # the outage: spooled, durable, returns
        await sink.deliver([b"c 1"])          # the spool is not empty: queued behind b
        assert spool.lines == 2 and counters.spooled == 2
        influx.up = True
        await sink.deliver([b"d 1"])          # still behind the backlog, not ahead of it
        for _ in range(200):
            if spool.empty:
                break
            await asyncio.sleep(0.01)
        assert influx.written == [b"a 1", b"a 2", b"b 1", b"c 1", b"d 1"]
        assert counters.replayed == 3 and spool.empty
        replayer.cancel()

    asyncio.run(go())


def test_a_full_spool_makes_deliver_wait(tmp_path: Path) -> None:
    async def go() -> None:
        influx, counters = Flaky(), Counters()
        influx.up = False
        spool = Spool(tmp_path, 200)
        spool.open()
        writer = RetryingWriter(influx, InfluxSettings(retry_min_s=0.01, retry_max_s=0.02),
                                lambda line, why: None, counters)
        sink = DurableSink(writer, spool, counters)
        replayer = asyncio.create_task(sink.replay())
        line = b"x" * 60
        for _ in range(2):
            await sink.deliver([line])
        blocked = asyncio.create_task(sink.deliver([line]))
        await asyncio.sleep(0.1)
        assert not blocked.done(), "no room: waits (backpressure), drops nothing"
        influx.up = True
        await asyncio.wait_for(blocked, 5)
        for _ in range(200):
            if spool.empty:
                break
            await asyncio.sleep(0.01)
        assert influx.written == [line] * 3
        replayer.cancel()

    asyncio.run(go())


def test_refused_credentials_keep_everything_in_the_spool(tmp_path: Path) -> None:
    class Refusing:
        async def write(self, body: bytes) -> None:
            raise AuthWriteError("authorization failed", 401)

    async def go() -> None:
        counters = Counters()
        spool = Spool(tmp_path, 10**6)
        spool.open()
        writer = RetryingWriter(Refusing(), InfluxSettings(), lambda line, why: None, counters)
        await DurableSink(writer, spool, counters).deliver([b"a 1", b"a 2"])
        assert spool.lines == 2 and writer.auth_failing

    asyncio.run(go())
