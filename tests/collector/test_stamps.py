"""Readings without ts: a stamp unique per device, the same one for a redelivery."""

from __future__ import annotations

from pathlib import Path

from collector.records import Inbound
from collector.stamps import StampJournal

TOPIC = "sc/c/door/d/telemetry"
BODY = b'{"open": true}'
HOUR_S = 1_795_000_000 // 3600 * 3600


def journal(path: Path, now_s: float = HOUR_S + 10) -> StampJournal:
    made = StampJournal(path, clock=lambda: now_s)
    made.open()
    return made


def test_a_burst_received_on_one_millisecond_gets_one_stamp_each(tmp_path: Path) -> None:
    stamps = journal(tmp_path)
    burst = [stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=i + 1), "d") for i in range(200)]
    assert [s.ts_ms for s in burst] == list(range(1000, 1200))
    assert not burst[0].moved and all(s.moved for s in burst[1:])
    other = stamps.stamp(Inbound("sc/c/door/e/telemetry", BODY, 1000, packet_id=9), "e")
    assert other == (1000, False), "unique per device, not across devices"


def test_a_redelivery_gets_its_first_stamp_back_even_after_a_restart(tmp_path: Path) -> None:
    stamps = journal(tmp_path)
    first = stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=7), "d")
    stamps.close()
    again = journal(tmp_path)
    dup = again.stamp(Inbound(TOPIC, BODY, 5000, redelivered=True, packet_id=7), "d")
    assert dup.ts_ms == first.ts_ms == 1000


def test_the_same_bytes_again_are_a_new_reading(tmp_path: Path) -> None:
    """A heartbeat repeats itself: same topic, same payload, a new message."""
    stamps = journal(tmp_path)
    stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=7), "d")
    # in flight when the collector was killed: both come again with DUP, other packet ids
    second = stamps.stamp(Inbound(TOPIC, BODY, 4000, packet_id=8), "d")
    stamps.close()
    again = journal(tmp_path)
    assert again.stamp(Inbound(TOPIC, BODY, 9000, True, 8), "d").ts_ms == second.ts_ms == 4000
    assert again.stamp(Inbound(TOPIC, BODY, 9000, True, 7), "d").ts_ms == 1000
    fresh = again.stamp(Inbound(TOPIC, BODY, 9001, packet_id=7), "d")
    assert fresh.ts_ms == 9001, "without DUP it is new, even on a reused packet id"


def test_a_new_message_never_takes_a_stamp_given_before_a_restart(tmp_path: Path) -> None:
    stamps = journal(tmp_path)
    for i in range(50):                    # a burst moved 49 ms ahead of the clock
        stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=i + 1), "d")
    stamps.close()
    again = journal(tmp_path)
    stamp = again.stamp(Inbound(TOPIC, BODY, 1010, packet_id=99), "d")
    assert stamp == (1050, True)


def test_a_torn_journal_and_a_stray_file_do_not_stop_it(tmp_path: Path) -> None:
    stamps = journal(tmp_path)
    stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=1), "d")
    stamps.close()
    (log,) = tmp_path.glob("*.log")
    log.write_bytes(log.read_bytes() + b"0123abc")          # a crash in the middle of a line
    (tmp_path / "notes.txt").write_text("someone's file")
    again = journal(tmp_path)
    assert again.unreadable_lines == 1
    assert again.stamp(Inbound(TOPIC, BODY, 1000, True, 1), "d").ts_ms == 1000
    again.stamp(Inbound(TOPIC, BODY, 2000, packet_id=2), "d")
    again.close()
    assert log.read_text().splitlines()[-1].endswith(" d 2000"), "a fresh line after the tear"
    assert (tmp_path / "notes.txt").exists(), "not ours: left alone"
    third = journal(tmp_path)
    assert third.unreadable_lines == 1


def test_journals_older_than_the_window_are_dropped(tmp_path: Path) -> None:
    stamps = journal(tmp_path, now_s=HOUR_S)
    stamps.stamp(Inbound(TOPIC, BODY, 1000, packet_id=1), "d")
    stamps.close()
    later = journal(tmp_path, now_s=HOUR_S + 25 * 3600)
    assert later.stamp(Inbound(TOPIC, BODY, 3000, True, 1), "d").ts_ms == 3000
    assert len(list(tmp_path.glob("*.log"))) == 1
