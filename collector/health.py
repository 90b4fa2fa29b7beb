"""The collector's own alerts: raised and cleared from its self-metrics, one state each.

    spool_nearly_full   the spool passed ``storage.spool_alert_pct`` of its bound
    write_stalled       readings are waiting and nothing was written for ``stall_alert_s``
    influx_auth         InfluxDB answers 401 / 403: everything is kept, nothing is written

Each change of state becomes an ``alert`` point (kind ``collector``, device = the instance)
and a log line; the points travel the same sink path as readings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from devices import schema
from devices.schema import Point

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the rules look at, taken from the counters at one moment."""

    spool_bytes: int
    spool_max_bytes: int
    pending: int
    seconds_since_write: float
    auth_failing: bool


class Health:
    """Evaluates the rules and remembers which alerts are open."""

    def __init__(self, instance: str, spool_alert_pct: float, stall_alert_s: float) -> None:
        self._instance = instance
        self._spool_alert = spool_alert_pct / 100
        self._stall_alert_s = stall_alert_s
        self.open: set[str] = set()

    def check(self, now: Reading, now_ms: int) -> list[Point]:
        """The alert points for every rule whose state changed."""
        spool_share = now.spool_bytes / now.spool_max_bytes
        states = {
            # Hysteresis: cleared only 10 points below the threshold.
            "spool_nearly_full": (
                spool_share >= self._spool_alert
                or ("spool_nearly_full" in self.open and spool_share >= self._spool_alert - 0.1),
                "warning", spool_share * 100, f"spool at {spool_share:.0%} of its bound"),
            "write_stalled": (
                now.pending > 0 and now.seconds_since_write >= self._stall_alert_s,
                "critical", now.seconds_since_write,
                f"{now.pending} lines waiting, nothing written for "
                f"{now.seconds_since_write:.0f} s"),
            "influx_auth": (now.auth_failing, "critical", float(now.auth_failing),
                            "InfluxDB refuses the credentials (401/403); all is kept"),
        }
        points = []
        for rule, (active, severity, value, message) in states.items():
            if active == (rule in self.open):
                continue
            state = "raised" if active else "cleared"
            (self.open.add if active else self.open.discard)(rule)
            log.log(logging.ERROR if active else logging.INFO, "alert %s %s: %s", rule, state,
                    message)
            tags = ((schema.DEVICE, self._instance), (schema.KIND, schema.COLLECTOR),
                    ("rule", rule), ("severity", severity))
            fields = (("state", state), ("value", float(value)), ("score", 1.0 if active else 0.0),
                      ("message", message))
            points.append(Point(schema.ALERT, tags, fields, now_ms))
        return points
