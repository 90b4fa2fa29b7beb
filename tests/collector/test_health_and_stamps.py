from __future__ import annotations

from pathlib import Path

from collector.health import Health, Reading
from collector.records import Inbound
from collector.stamps import StampJournal


def states(points: list) -> dict[str, str]:
    return {dict(p.tags)["rule"]: dict(p.fields)["state"] for p in points}


def test_alerts_raise_once_and_clear_with_hysteresis() -> None:
    health = Health("sct-1", spool_alert_pct=80, stall_alert_s=60)
    calm = Reading(0, 1000, 0, 1.0, False)
    assert health.check(calm, 1) == []
    assert states(health.check(Reading(850, 1000, 5, 120.0, True), 2)) == {
        "spool_nearly_full": "raised", "write_stalled": "raised", "influx_auth": "raised"}
    assert health.check(Reading(850, 1000, 5, 130.0, True), 3) == [], "not raised again"
    assert health.check(Reading(750, 1000, 5, 130.0, True), 4) == [], "hysteresis holds"
    assert states(health.check(calm, 5)) == {
        "spool_nearly_full": "cleared", "write_stalled": "cleared", "influx_auth": "cleared"}


def test_a_redelivery_gets_its_first_stamp_back_even_after_a_restart(tmp_path: Path) -> None:
    first = Inbound("sc/c/door/d/telemetry", b'{"open": true}', 1000)
    journal = StampJournal(tmp_path)
    journal.open()
    journal.record(first)
    journal.close()

    again = StampJournal(tmp_path)
    again.open()
    redelivered = Inbound(first.topic, first.payload, 5000, redelivered=True)
    assert again.restamp(redelivered).received_ms == 1000
    fresh = Inbound(first.topic, first.payload, 6000)
    assert again.restamp(fresh).received_ms == 6000, "a new message is a new reading"
    other = Inbound(first.topic, b'{"open": false}', 7000, redelivered=True)
    assert again.restamp(other).received_ms == 7000
