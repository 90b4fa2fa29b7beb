"""Cluster mode's pure parts: partitions, shares, replicated stamps, redelivery filter."""

from __future__ import annotations

import orjson

from collector.cluster.source import own_share
from collector.cluster.stamps import ReplicatedStamps, acked_record
from collector.cluster.takeover import LastSeen
from collector.cluster.topology import Layout, partition_of
from collector.records import Inbound


def test_a_community_has_the_same_partition_everywhere() -> None:
    # CRC-32, not Python's salted hash(): the same in every process and on every machine.
    assert partition_of("bd-mancheng-001", 16) == partition_of("bd-mancheng-001", 16)
    import zlib
    assert partition_of("bd-mancheng-001", 16) == zlib.crc32(b"bd-mancheng-001") % 16
    spread = {partition_of(f"c-{i}", 8) for i in range(200)}
    assert spread == set(range(8))


def test_peers_split_the_partitions_evenly_and_cover_them_all() -> None:
    peers = ["sct-b", "sct-a", "sct-c"]
    shares = [own_share(p, peers, 16) for p in peers]
    assert set().union(*shares) == set(range(16))
    assert sum(len(s) for s in shares) == 16
    assert sorted(len(s) for s in shares) == [5, 5, 6]
    assert own_share("stranger", peers, 16) in ({0, 2, 4, 6, 8, 10, 12, 14},
                                                {1, 3, 5, 7, 9, 11, 13, 15})


def _msg(payload: bytes, redelivered: bool, at: int) -> Inbound:
    return Inbound("sc/c1/waste_bin/bin-1/telemetry", payload, at, redelivered)


def test_a_redelivery_gets_the_stamp_the_dead_collector_gave_it_unless_acknowledged() -> None:
    dead = ReplicatedStamps("sct-a", lambda d: 0)
    heartbeat = b'{"fill_pct": 10}'
    message = _msg(heartbeat, False, 1000)
    first = dead.stamp(message, "bin-1")
    records_1, given_1 = dead.take_pending()
    ids_1 = given_1[id(message)]
    second = dead.stamp(_msg(heartbeat, False, 1000), "bin-1")   # same bytes, same ms
    records_2, _ = dead.take_pending()
    assert (first.ts_ms, second.ts_ms) == (1000, 1001) and second.moved
    # The first message was acknowledged; the second written but not, when sct-a died.
    stream = [body for _, body in records_1 + records_2] + [acked_record(ids_1)]

    heir = ReplicatedStamps("sct-b", lambda d: 0)
    assert heir.load(stream, {"bin-1"}) == 1
    again = heir.stamp(_msg(heartbeat, True, 5000), "bin-1")
    assert again.ts_ms == 1001 and not again.moved
    # The heir records the stamp as its own (a second take-over finds it too) ...
    record = orjson.loads(heir.take_pending()[0][0][1])
    assert (record["d"], record["ts"]) == ("bin-1", 1001)
    # ... and a new message, even with the same bytes, is stamped anew after the last.
    fresh = heir.stamp(_msg(heartbeat, True, 900), "bin-1")
    assert fresh.ts_ms == 1002 and fresh.moved


def test_stamps_of_other_devices_and_torn_records_are_left_out() -> None:
    dead = ReplicatedStamps("sct-a", lambda d: 0)
    dead.stamp(_msg(b"{}", False, 10), "bin-9")
    records, _ = dead.take_pending()
    heir = ReplicatedStamps("sct-b", lambda d: 0)
    assert heir.load([*(b for _, b in records), b"{torn", b"{\"acked\": 3}"], {"bin-1"}) == 0


def test_what_is_not_newer_than_the_last_processed_reading_is_not_detected_again() -> None:
    from collector.decode import Decoded

    last = LastSeen()
    last.learn("d1", 2000)

    class Where:
        device = "d1"

    items = [Decoded.__new__(Decoded) for _ in range(3)]
    for item, ts in zip(items, (1000, 2000, 3000), strict=True):
        object.__setattr__(item, "ts_ms", ts)
        object.__setattr__(item, "where", Where())
    assert [i.ts_ms for i in last.fresh(items)] == [3000]
    assert last.skipped == 2


def test_the_topology_record_is_read_past_a_torn_one() -> None:
    layout = Layout.read([orjson.dumps({"partitions": 4, "root": "sc",
                                        "communities": {"c1": 1}}), b"not json",
                          orjson.dumps({"partitions": 4, "root": "sc",
                                        "communities": {"c2": 3}})])
    assert (layout.partitions, layout.root, layout.communities) == (4, "sc",
                                                                     {"c1": 1, "c2": 3})


def test_acknowledgements_go_in_delivery_order_one_frame_per_settled_run() -> None:
    import asyncio

    from collector.cluster.acks import Acks

    class Channel:          # records what would be sent; one error path, no broker needed
        def __init__(self) -> None:
            self.sent: list[tuple[int, bool]] = []

        async def basic_ack(self, tag: int, multiple: bool = False) -> None:
            self.sent.append((tag, multiple))

    async def run() -> tuple[list[tuple[int, bool]], list[list[str]]]:
        channel = Channel()
        named: list[list[str]] = []
        acks = Acks(channel, named.append)
        tickets = [acks.track(tag) for tag in (1, 2, 3, 4)]
        tickets[1].stamps = ["a/1"]
        tickets[1].release()                 # 2 settles first: 1 still held, nothing sent
        await asyncio.sleep(0)
        assert channel.sent == []
        tickets[0].release()                 # 1 and 2 go in one frame
        tickets[3].release()                 # 4 waits behind 3
        for _ in range(3):
            await asyncio.sleep(0)
        assert channel.sent == [(2, True)] and len(acks) == 2
        tickets[2].release()
        for _ in range(3):
            await asyncio.sleep(0)
        return channel.sent, named

    sent, named = asyncio.run(run())
    assert sent == [(2, True), (4, True)]
    assert named == [["a/1"]]


def test_the_newest_complete_detector_snapshot_is_resumed_past_torn_records() -> None:
    from collector.cluster.detectorstate import CHUNK, newest, records

    old = records({"a": {"n": 1}}, "x/1")
    big = records({f"d{i:04d}": {"n": i} for i in range(CHUNK + 1)}, "x/2")
    assert len(old) == 1 and len(big) == 2
    cut_short = records({f"d{i:04d}": {"n": -i} for i in range(CHUNK + 1)}, "y/1")[:1]
    states, unreadable = newest([*old, b"{torn", *big, *cut_short])
    assert unreadable == 1 and len(states) == CHUNK + 1 and states["d0007"] == {"n": 7}
    assert newest([*old, *records({}, "x/3")]) == ({}, 0)    # an empty snapshot is one too
    assert newest([b'{"snapshot": "z", "chunk": 3, "of": 2, "states": {}}']) == ({}, 1)


def test_a_partition_s_detector_state_is_saved_only_once_its_take_over_is_done() -> None:
    import asyncio

    from conftest import SMALL_REGISTRY

    from collector.cluster.detectorstate import StateKeeper
    from collector.detect.alerts import AlertBook
    from collector.detect.stage import DetectStage
    from collector.settings import DetectSettings

    appended: list[int] = []

    async def append(n: int, bodies: list[bytes]) -> None:
        appended.append(n)

    keeper = StateKeeper("sct-x", DetectStage(SMALL_REGISTRY, DetectSettings(), AlertBook()),
                         lambda n: [], lambda: {0, 1}, append)
    asyncio.run(keeper.save())
    assert appended == []        # active, still warming: its empty state must not be newest
    keeper.resume(0, [])
    keeper.ready(1)              # started cold (history unreadable): saved from now on
    asyncio.run(keeper.save())
    keeper.lost({0})
    asyncio.run(keeper.save())
    assert appended == [0, 1, 1]
