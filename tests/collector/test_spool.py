"""The spool on disk: order, durability across reopening, torn tails, the bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.sink.spool import HEADER, Spool, encode_lines


def batch(i: int, n: int = 3) -> list[bytes]:
    return [f'm,b={i} v={j}.0,s="two\nlines" {j}'.encode() for j in range(n)]


def drain(spool: Spool) -> list[list[bytes]]:
    out = []
    while (record := spool.head()) is not None:
        out.append(record.decode())
        spool.commit(record)
    return out


def test_fifo_with_framed_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.open()
    for i in range(5):
        spool.append(encode_lines(batch(i)), 3)
    assert spool.lines == 15 and not spool.empty
    assert drain(spool) == [batch(i) for i in range(5)], "newlines inside strings survive"
    assert spool.empty and spool.size == 0
    assert list(tmp_path.glob("*.seg")) == [], "replayed segments are deleted"


def test_survives_reopening_midway(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6, segment_bytes=300)
    spool.open()
    for i in range(10):
        spool.append(encode_lines(batch(i)), 3)
    assert len(list(tmp_path.glob("*.seg"))) > 2, "rolls over to new segments"
    for _ in range(4):
        record = spool.head()
        assert record is not None
        spool.commit(record)
    again = Spool(tmp_path, 10**6, segment_bytes=300)
    again.open()
    assert again.lines == 18
    assert drain(again) == [batch(i) for i in range(4, 10)]


def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.open()
    spool.append(encode_lines(batch(1)), 3)
    spool.append(encode_lines(batch(2)), 3)
    (segment,) = tmp_path.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-5])  # a crash in the middle of an append
    again = Spool(tmp_path, 10**6)
    again.open()
    assert again.lines == 3
    assert drain(again) == [batch(1)]
    again.append(encode_lines(batch(3)), 3)
    assert drain(again) == [batch(3)], "appends go on after the cut"


def test_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 400)
    spool.open()
    body = encode_lines(batch(1))
    assert spool.fits(body)
    spool.append(body, 3)
    while spool.fits(body):
        spool.append(body, 3)
    assert spool.size <= 400
    record = spool.head()
    assert record is not None
    spool.commit(record)
    assert spool.fits(body), "replay makes room"


def three_records(path: Path) -> tuple[Spool, list[int]]:
    """A spool of three 4-line records; the offsets where each starts."""
    spool = Spool(path, 10**6)
    spool.open()
    starts = []
    for i in range(3):
        starts.append(spool._sizes.get(1, 0))
        spool.append(encode_lines(batch(i, 4)), 4)
    return spool, starts


def test_a_flipped_byte_loses_one_record_not_the_ones_after_it(tmp_path: Path) -> None:
    _, starts = three_records(tmp_path)
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[starts[1] + HEADER.size + 9] ^= 0x01
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, 10**6)
    again.open()
    assert again.lines == 8 and again.damaged_records == 1
    assert drain(again) == [batch(0, 4), batch(2, 4)]
    (damaged,) = tmp_path.glob("damaged-*.bin")
    assert len(damaged.read_bytes()) == starts[2] - starts[1], "its bytes kept aside"


def test_a_damaged_length_is_skipped_by_searching_for_the_next_record(tmp_path: Path) -> None:
    _, starts = three_records(tmp_path)
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[starts[1] + 2] ^= 0x40            # the length field itself
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, 10**6)
    again.open()
    assert drain(again) == [batch(0, 4), batch(2, 4)]


def test_the_last_record_damaged_whole_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    three_records(tmp_path)
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0x01
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, 10**6)
    again.open()
    assert again.damaged_records == 1 and drain(again) == [batch(0, 4), batch(1, 4)]


@pytest.mark.parametrize(("offset", "replayed_from"), [
    ("inside the second", 1), ("past the end", 0), ("on the third", 2)])
def test_a_commit_offset_is_believed_only_on_a_record_boundary(
        tmp_path: Path, offset: str, replayed_from: int) -> None:
    _, starts = three_records(tmp_path)
    at = {"inside the second": starts[1] + 7, "past the end": 10**6,
          "on the third": starts[2]}[offset]
    (tmp_path / "commit").write_text(json.dumps({"segment": 1, "offset": at}))
    again = Spool(tmp_path, 10**6)
    again.open()
    assert drain(again) == [batch(i, 4) for i in range(replayed_from, 3)]


@pytest.mark.parametrize("commit", ['{"segment": 1, "off', "", '{"segment": "x", "offset": 1}',
                                    "[]"])
def test_an_unreadable_commit_replays_everything(tmp_path: Path, commit: str) -> None:
    three_records(tmp_path)
    (tmp_path / "commit").write_text(commit)
    (tmp_path / "notes").write_text("not ours")
    again = Spool(tmp_path, 10**6)
    again.open()
    assert drain(again) == [batch(i, 4) for i in range(3)]
    assert list(tmp_path.glob("commit.bad-*")) and (tmp_path / "notes").exists()
