from __future__ import annotations

from collector.health import Health, Reading


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


