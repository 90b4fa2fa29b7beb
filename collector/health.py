"""The collector's own alerts: raised and cleared from its self-metrics, one state each.

    spool_nearly_full   the spool passed ``storage.spool_alert_pct`` of its bound
    write_stalled       readings are waiting and nothing was written for ``stall_alert_s``
    influx_auth         InfluxDB answers 401 / 403: everything is kept, nothing is written
    storage_full        the spool or the dead letters cannot be written (disk full): nothing
                        more is acknowledged until they can
    registry_problem    registry attributes the rules cannot use (those rules are skipped for
                        those devices; their readings are still written)

Each change of state becomes an ``alert`` point (kind ``collector``, device = the instance)
and a log line, through the same :class:`AlertBook` lifecycle as device alerts; the points
travel the same sink path as readings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from collector.detect.alerts import AlertBook, Subject, Verdict
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
    storage_failing: str | None = None
    registry_problems: tuple[str, ...] = ()


class Health:
    """Evaluates the rules; the raise/clear bookkeeping is the detectors' own alert book."""

    def __init__(self, instance: str, spool_alert_pct: float, stall_alert_s: float) -> None:
        self._subject = Subject(instance, schema.COLLECTOR)
        self._spool_alert = spool_alert_pct / 100
        self._stall_alert_s = stall_alert_s
        self._book = AlertBook()

    def check(self, now: Reading, now_ms: int) -> list[Point]:
        """The alert points for every rule whose state changed."""
        spool_share = now.spool_bytes / now.spool_max_bytes
        spool_open = self._book.is_open(self._subject.device, "spool_nearly_full")
        verdicts = [
            # Hysteresis: cleared only 10 points below the threshold.
            Verdict("spool_nearly_full",
                    spool_share >= self._spool_alert - (0.1 if spool_open else 0.0),
                    "warning", spool_share * 100, f"spool at {spool_share:.0%} of its bound"),
            Verdict("write_stalled",
                    now.pending > 0 and now.seconds_since_write >= self._stall_alert_s,
                    "critical", now.seconds_since_write,
                    f"{now.pending} lines waiting, nothing written for "
                    f"{now.seconds_since_write:.0f} s"),
            Verdict("influx_auth", now.auth_failing, "critical", float(now.auth_failing),
                    "InfluxDB refuses the credentials (401/403); all is kept"),
            Verdict("storage_full", now.storage_failing is not None, "critical", 1.0,
                    f"cannot write to storage.dir ({now.storage_failing}): nothing more is "
                    "acknowledged, the broker keeps the messages"),
            Verdict("registry_problem", bool(now.registry_problems), "warning",
                    float(len(now.registry_problems)),
                    f"{len(now.registry_problems)} registry attributes the rules cannot use "
                    f"(their readings are written, those rules skipped): "
                    + "; ".join(now.registry_problems[:5])),
        ]
        points = []
        for verdict in verdicts:
            alert = self._book.observe(self._subject, verdict, now_ms)
            if alert is not None:
                log.log(logging.ERROR if verdict.active else logging.INFO, "alert %s %s: %s",
                        alert.rule, alert.state, alert.message)
                points.append(alert.point())
        return points
