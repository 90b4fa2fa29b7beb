from __future__ import annotations

from pathlib import Path

from collector.deadletter import DeadLetterStore
from collector.records import Reject


def test_round_trip_text_and_binary(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, 10_000)
    kept = [Reject("sc/a/door/d/telemetry", b'{"open": 3}', "invalid", "field 'open'", 1),
            Reject("sc/a/door/d/telemetry", b"\xff\x00binary", "bad_json", "not JSON", 2)]
    for reject in kept:
        assert store.add(reject)
    store.close()
    assert list(DeadLetterStore(tmp_path, 0).read()) == kept
    assert list(store.read("bad_json")) == kept[1:]


def test_bounded_and_counted(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, 400)
    results = [store.add(Reject("t", b"x" * 50, "bad_json", "d", i)) for i in range(10)]
    store.close()
    assert results[0] and not results[-1]
    assert store.dropped == results.count(False)
    assert store.path.stat().st_size <= 400
    assert len(list(store.read())) == results.count(True)


def test_replayed_records_are_left_out_and_a_torn_tail_is_not_read(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, 10_000)
    for i in range(3):
        store.add(Reject("t", b"{}", "invalid", "d", i))
    store.close()
    offsets = [offset for offset, _ in store.records()]
    store.mark_replayed(offsets[:2])
    assert [r.received_ms for r in store.read()] == [2]
    with store.path.open("ab") as handle:
        handle.write(b'{"half": ')  # a collector appending right now
    assert [r.received_ms for r in store.read()] == [2]


def test_a_line_torn_by_a_crash_hides_nothing_after_it(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, 10_000)
    store.add(Reject("t", b"{}", "invalid", "d", 1))
    store.close()
    with store.path.open("ab") as handle:
        handle.write(b'{"received": "2026-')          # killed in the middle of an append
    again = DeadLetterStore(tmp_path, 10_000)
    again.add(Reject("t", b"{}", "bad_json", "d", 2))  # starts on a fresh line
    again.add(Reject("t", b"{}", "bad_json", "d", 3))
    again.close()
    assert [r.received_ms for r in again.read()] == [1, 2, 3]
    assert again.unreadable == 1
    with again.path.open("ab") as handle:
        handle.write(b"\x00\xffgarbage in the middle\n")
    again.add(Reject("t", b"{}", "invalid", "d", 4))
    assert [r.received_ms for r in again.read()] == [1, 2, 3, 4] and again.unreadable == 2
