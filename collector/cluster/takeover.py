"""Taking over a partition without an alert storm, and without acting twice on a redelivery.

When a collector becomes active on a partition (at start, or when the collector that held it
died), it rebuilds what the rules need from InfluxDB, which every collector writes to:

- the open alerts of the partition's devices: the last transition of each (device, rule) in
  the ``alert`` measurement over ``ALERT_DAYS``; those last ``raised`` are opened again, so
  they stay open and are cleared (once) when the condition ends, never raised twice;
- each device's last reading time (the newest point of its measurement over ``LAST_DAYS``).

- the statistical detectors of its devices, from the newest complete snapshot in the
  partition's state stream (:mod:`collector.cluster.detectorstate`), so they go on scoring
  instead of starting a day-long warm-up again.

The rest of a device's rule state (its counters, its night flows) starts cold, and a cold
rule is quiet: ``counter_backwards`` needs a previous value, ``device_silent`` a usual
interval (learnt from two readings), and a statistical detector without a saved state is
muted through its warm-up (README, Detection). So take-over raises nothing that history would
not have raised, and costs two queries per device kind of the partition and two stream reads.

Redelivery: the readings a dead collector wrote but had not acknowledged come again. A
reading whose time is not after its device's last processed one is written again (InfluxDB
keeps one point per device and time, so it overwrites itself) but is not fed to the rules,
so its alerts are not raised or published again (:class:`LastSeen`).

When a collector loses a partition (its connection dropped; another collector took it), it
forgets the partition's devices: their silence is no longer its to report.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.cluster.broker import FAILURES
from collector.cluster.detectorstate import StateKeeper
from collector.cluster.stamps import LOOKBACK_S, ReplicatedStamps
from collector.cluster.topology import Names, partition_of
from collector.decode import Decoded
from collector.detect.alerts import Alert
from collector.detect.stage import DetectStage
from collector.errors import BrokerError, WriteError
from devices import schema
from devices.registry import Registry

log = logging.getLogger(__name__)

ALERT_DAYS = 30
LAST_DAYS = 7
Query = Callable[[str], Awaitable[list[list[dict[str, Any]]]]]


class LastSeen:
    """Each device's last processed reading time: what is not newer is not detected again."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        #: Readings written again but not fed to the rules (redeliveries).
        self.skipped = 0

    def fresh(self, items: list[Decoded]) -> list[Decoded]:
        last = self._last
        out = []
        for item in items:
            device = item.where.device
            if item.ts_ms > last.get(device, -1):
                last[device] = item.ts_ms
                out.append(item)
            else:
                self.skipped += 1
        return out

    def learn(self, device: str, ts_ms: int) -> None:
        if ts_ms > self._last.get(device, -1):
            self._last[device] = ts_ms

    def forget(self, devices: list[str]) -> None:
        for device in devices:
            self._last.pop(device, None)


def _regex(ids: list[str]) -> str:
    # Identifiers are [a-z0-9-] (devices.topics.IDENTIFIER): nothing to escape but "-".
    return "/^(" + "|".join(i.replace("-", "\\-") for i in ids) + ")$/"


async def open_alerts(query: Query, where: str = "") -> list[Alert]:
    """The alerts whose last transition in InfluxDB (over ``ALERT_DAYS``) is ``raised``, of
    the communities ``where`` selects (all without it): what is open, whichever collector
    raised it."""
    condition = f"{where} AND " if where else ""
    series = (await query(
        f"SELECT last(state) AS state, value, score, message FROM {schema.ALERT} "
        f"WHERE {condition}time > now() - {ALERT_DAYS}d GROUP BY *"))[0]
    latest: dict[tuple[str, str], Alert] = {}
    for s in series:
        tags = s.get("tags", {})
        for ts, state, value, score, message in s.get("values", []):
            alert = Alert(tags.get("rule", ""), str(state), tags.get("severity", ""),
                          tags.get(schema.DEVICE, ""), tags.get(schema.KIND, ""),
                          tags.get(schema.COMMUNITY, ""), tags.get(schema.CITY, ""),
                          float(value or 0), float(score or 0), str(message or ""), int(ts))
            key = (alert.device, alert.rule)
            # One series per tag set: a rule raised at two severities is two series.
            if key not in latest or latest[key].ts_ms < alert.ts_ms:
                latest[key] = alert
    return sorted((a for a in latest.values() if a.state == "raised"), key=lambda a: a.ts_ms)


class Takeover:
    """Warm-up on becoming active on a partition; forgetting on losing one."""

    def __init__(self, registry: Registry, partitions: int, detect: DetectStage,
                 last: LastSeen, query: Query, stamps: ReplicatedStamps, names: Names,
                 read: Callable[[str, datetime], Awaitable[list[bytes]]],
                 keeper: StateKeeper, state_lookback_s: float) -> None:
        self._registry = registry
        self._detect = detect
        self._last = last
        self._query = query
        self._stamps = stamps
        self._names = names
        self._read = read
        self._keeper = keeper
        self._state_lookback_s = state_lookback_s
        self._communities: dict[int, list[str]] = defaultdict(list)
        for community in sorted(registry.communities):
            self._communities[partition_of(community, partitions)].append(community)
        self._devices: dict[str, list[str]] = defaultdict(list)
        for device in registry.devices.values():
            self._devices[device.community.id].append(device.id)
        self._partition_of = {c: partition_of(c, partitions) for c in registry.communities}
        self._kinds = sorted({d.kind for d in registry.devices.values()})
        #: Seconds the last warm-up took.
        self.last_warmup_s = 0.0

    def partition_of_device(self, device: str) -> int:
        """The partition a device's messages come from (its community's)."""
        found = self._registry.device(device)
        return self._partition_of[found.community.id] if found is not None else 0

    def communities(self, partitions: set[int]) -> set[str]:
        return {c for n in partitions for c in self._communities.get(n, [])}

    def devices(self, n: int) -> list[str]:
        """Partition ``n``'s devices."""
        return [d for c in self._communities.get(n, []) for d in self._devices[c]]

    async def warm(self, n: int) -> None:
        """Rebuild the open alerts and last reading times of partition ``n``'s devices.
        InfluxDB unreachable: retried by the caller's query; a failure is logged and the
        partition starts cold (never blocks ingest for long)."""
        communities = self._communities.get(n, [])
        if not communities:
            return
        started = time.monotonic()
        where = f"community =~ {_regex(communities)}"
        try:
            reopened = await self._alerts(where)
            devices = await self._last_readings(where)
            queried = time.monotonic() - started
            now = datetime.now(UTC)
            waiting = self._stamps.load(await self._read(
                self._names.stamps(n), now - timedelta(seconds=LOOKBACK_S)),
                set(self.devices(n)))
            resumed = self._keeper.resume(n, await self._read(
                self._names.state(n), now - timedelta(seconds=self._state_lookback_s)))
        except (WriteError, BrokerError, *FAILURES, KeyError, ValueError, TypeError,
                IndexError) as exc:
            log.error("take-over of partition %d: could not read its history from InfluxDB "
                      "(%s: %s); its devices start cold", n, type(exc).__name__, exc)
            self._keeper.ready(n)
            return
        self.last_warmup_s = time.monotonic() - started
        log.info("partition %d (%d communities): %d open alerts and %d devices' last "
                 "readings rebuilt from InfluxDB, %d unacknowledged stamps from the stamp "
                 "stream, %d devices' statistical detectors resumed from the state stream, "
                 "in %.2f s (InfluxDB %.2f s)", n, len(communities), reopened, devices,
                 waiting, resumed, self.last_warmup_s, queried)

    async def _alerts(self, where: str) -> int:
        alerts = await open_alerts(self._query, where)
        for alert in alerts:
            self._detect.book.reopen(alert)
        return len(alerts)

    async def _last_readings(self, where: str) -> int:
        statements = [f'SELECT * FROM "{schema.measurement(kind)}" WHERE {where} AND '
                      f"time > now() - {LAST_DAYS}d GROUP BY {schema.DEVICE} "
                      "ORDER BY time DESC LIMIT 1" for kind in self._kinds]
        results = await self._query(";".join(statements))
        devices = 0
        for series in results:
            for s in series:
                device = s.get("tags", {}).get(schema.DEVICE)
                if device and s.get("values"):
                    self._last.learn(device, int(s["values"][0][0]))
                    self._stamps.learn(device, int(s["values"][0][0]))
                    devices += 1
        return devices

    def forget(self, partitions: set[int]) -> None:
        """The partitions were lost: their devices are no longer this collector's."""
        devices = [d for n in partitions for d in self.devices(n)]
        self._keeper.lost(partitions)
        self._detect.forget(devices)
        self._last.forget(devices)
