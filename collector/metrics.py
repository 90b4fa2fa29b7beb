"""Self-metrics: what the collector counted, as a ``collector`` point and one log line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from devices import schema
from devices.schema import Point


@dataclass
class Counters:
    """Running totals since start. Stages add to them; the reporter reads them."""

    received: int = 0          # MQTT messages taken from the broker
    redelivered: int = 0       # of which the broker had sent before (DUP): no ack came back
    accepted: int = 0          # points built from them (readings, events, status)
    rejected: int = 0          # messages or array objects refused
    alerts: int = 0            # alert transitions (raised or cleared) from the detectors
    by_reason: Counter[str] = field(default_factory=Counter)
    written: int = 0           # lines InfluxDB took
    batches: int = 0
    write_retries: int = 0
    write_rejected: int = 0    # lines InfluxDB refused, set aside in the dead letters
    spooled: int = 0           # lines appended to the spool
    replayed: int = 0          # lines read back from the spool and written

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.by_reason[reason] += 1

    def point(self, instance: str, pending: int, now_ms: int,
              extra: dict[str, int] | None = None, last_write: float | None = None) -> Point:
        """The ``collector`` point for this moment; ``extra`` adds gauges and counts read
        from the components that own them (spool, dead letters, source, detect)."""
        fields: list[tuple[str, schema.FieldValue]] = [
            ("received", self.received), ("redelivered", self.redelivered),
            ("accepted", self.accepted),
            ("rejected", self.rejected), ("alerts", self.alerts), ("written", self.written),
            ("batches", self.batches), ("write_retries", self.write_retries),
            ("write_rejected", self.write_rejected), ("pending", pending),
            ("spooled", self.spooled),
            ("replayed", self.replayed),
        ]
        fields.extend((extra or {}).items())
        if last_write is not None:
            fields.append(("seconds_since_write", max(0.0, now_ms / 1000 - last_write)))
        fields.extend((f"rejected_{reason}", n) for reason, n in sorted(self.by_reason.items()))
        return Point(schema.COLLECTOR, ((schema.INSTANCE, instance),), tuple(fields), now_ms)

    def summary(self, pending: int) -> str:
        """One log line."""
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.by_reason.items())) or "none"
        return (f"received={self.received} accepted={self.accepted} written={self.written} "
                f"pending={pending} rejected={self.rejected} ({reasons}) "
                f"retries={self.write_retries} spooled={self.spooled} "
                f"replayed={self.replayed}")
