from __future__ import annotations

import asyncio

from collector.settings import InfluxSettings
from collector.sink.batcher import Batcher


def test_flushes_on_size_then_on_age_and_drains() -> None:
    batches: list[list[bytes]] = []

    async def write(batch: list[bytes]) -> None:
        batches.append(batch)

    async def go() -> None:
        batcher = Batcher(InfluxSettings(batch_size=3, flush_interval_s=0.2), write)
        runner = asyncio.create_task(batcher.run())
        for i in range(7):
            await batcher.add(b"%d" % i)
        await asyncio.sleep(0.05)
        assert batches == [[b"0", b"1", b"2"], [b"3", b"4", b"5"]], "two full batches"
        await asyncio.sleep(0.4)
        assert batches[-1] == [b"6"], "the last line goes out on age"
        await batcher.add(b"7")
        await batcher.drain()
        assert batches[-1] == [b"7"] and batcher.pending == 0
        runner.cancel()

    asyncio.run(go())


def test_add_waits_when_the_writers_are_behind() -> None:
    release = asyncio.Event()
    written: list[list[bytes]] = []

    async def slow(batch: list[bytes]) -> None:
        await release.wait()
        written.append(batch)

    async def go() -> None:
        batcher = Batcher(InfluxSettings(batch_size=1, max_pending_batches=2), slow, writers=1)
        runner = asyncio.create_task(batcher.run())
        adding = asyncio.create_task(_add_many(batcher, 10))
        await asyncio.sleep(0.1)
        assert not adding.done(), "bounded: the producer waits instead of piling up"
        assert batcher.pending <= 4
        release.set()
        await asyncio.wait_for(adding, 5)
        await batcher.drain()
        assert sum(len(b) for b in written) == 10
        runner.cancel()

    asyncio.run(go())


async def _add_many(batcher: Batcher, n: int) -> None:
    for i in range(n):
        await batcher.add(b"%d" % i)
