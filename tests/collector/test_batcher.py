from __future__ import annotations

import asyncio

from conftest import Claim

from collector.settings import InfluxSettings
from collector.sink.batcher import Batcher


async def settle() -> None:
    """A few turns of the loop: the writer tasks take and write what was handed over."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_flushes_on_size_then_on_age_and_drains() -> None:
    batches: list[list[bytes]] = []
    now = [100.0]

    async def write(batch: list[bytes]) -> None:
        batches.append(batch)

    async def go() -> None:
        batcher = Batcher(InfluxSettings(batch_size=3, flush_interval_s=1.0), write,
                          clock=lambda: now[0])
        runner = asyncio.create_task(batcher.run())
        for i in range(7):
            await batcher.add(b"%d" % i)
        await settle()
        assert batches == [[b"0", b"1", b"2"], [b"3", b"4", b"5"]], "two full batches"
        now[0] += 0.9
        await batcher.flush_if_old()
        await settle()
        assert len(batches) == 2, "the last line is not old enough yet"
        now[0] += 0.1
        await batcher.flush_if_old()
        await settle()
        assert batches[-1] == [b"6"], "the last line goes out on age"
        await batcher.add(b"7")
        await batcher.drain()
        assert batches[-1] == [b"7"] and batcher.pending == 0
        runner.cancel()

    asyncio.run(go())


def test_a_stalled_source_flushes_what_holds_messages_once_old_enough() -> None:
    """flush_held: the broker waits for acknowledgements. The collector's own points alone
    (no claim) wait for their age; a batch with claims goes once min_batch_age_ms old, or at
    once when the broker's window is known to be full."""
    batches: list[list[bytes]] = []
    now = [100.0]

    async def write(batch: list[bytes]) -> None:
        batches.append(batch)

    async def go() -> None:
        batcher = Batcher(InfluxSettings(batch_size=100, flush_interval_s=60,
                                         min_batch_age_ms=20), write, clock=lambda: now[0])
        runner = asyncio.create_task(batcher.run())
        await batcher.add(b"metrics")
        assert await batcher.flush_held(now=True) == 0.0
        await settle()
        assert batches == [], "no claim: nothing waits for it"
        claim = Claim()
        await batcher.add_many([b"r1", b"r2"], claim)
        now[0] += 0.005
        assert abs(await batcher.flush_held(now=False) - 0.015) < 1e-9, "15 ms to go"
        await settle()
        assert batches == []
        now[0] += 0.016
        assert await batcher.flush_held(now=False) == 0.0
        await settle()
        assert batches == [[b"metrics", b"r1", b"r2"]] and claim.holds == 1
        await batcher.add_many([b"r3"], claim)
        assert await batcher.flush_held(now=True) == 0.0, "the window is full: at once"
        await settle()
        assert batches[-1] == [b"r3"]
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


def test_a_message_across_two_batches_holds_its_claim_once_in_each() -> None:
    batches: list[list[bytes]] = []
    gate = asyncio.Event()

    async def write(batch: list[bytes]) -> None:
        await gate.wait()
        batches.append(batch)

    async def go() -> None:
        batcher = Batcher(InfluxSettings(batch_size=4), write)
        runner = asyncio.create_task(batcher.run())
        first, second = Claim(), Claim()
        await batcher.add_many([b"a1", b"a2", b"a3"], first)
        await batcher.add_many([b"b1", b"b2", b"b3"], second)
        await asyncio.sleep(0.05)
        assert first.holds == 2 and second.holds == 3, "first: 1 batch, second: 2 batches"
        gate.set()
        await batcher.drain()
        assert batches == [[b"a1", b"a2", b"a3", b"b1"], [b"b2", b"b3"]]
        assert first.holds == 1 and second.holds == 1, "only the handlers' holds are left"
        runner.cancel()

    asyncio.run(go())
