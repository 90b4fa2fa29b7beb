"""The spool on disk: order, durability across reopening, torn tails, the bound."""

from __future__ import annotations

from pathlib import Path

from collector.sink.spool import Spool, encode_lines


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
