"""Stamps for readings without ``ts`` in cluster mode: replicated, so a take-over keeps them.

A reading without ``ts`` is stamped on receipt (as in :mod:`collector.stamps`). When the
collector that stamped it dies before acknowledging it, another collector gets the message
again and must give it the same stamp, else InfluxDB holds the reading twice. So the stamp
does not live on one collector's disk: each is appended to its partition's stamp stream
(``<prefix>.stamps.<n>``, replicated like the queues, kept 7 days) and confirmed by the broker
*before* the reading is handed to the writer; and once a message is acknowledged, an
``acked`` record names its stamps.

On taking a partition over, a collector reads that partition's stream back over the last
``LOOKBACK_S`` (longer than a message can stay unacknowledged: ``consumer_timeout``), keeps
the stamps of the partition's devices that were never acknowledged, and hands them out,
oldest first, to redelivered messages with the same topic and payload. It also learns each
device's last stamp, so a fresh stamp never takes an old one's millisecond.

What it cannot tell apart: a collector killed between sending an acknowledgement and
appending its ``acked`` record leaves those stamps looking unacknowledged; a later
redelivered message with the very same topic and payload would then take such a stamp and
overwrite the earlier reading (identical fields) instead of adding its own.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict, deque
from collections.abc import Callable

import orjson

from collector.records import Inbound
from collector.stamps import Stamp, message_key, next_stamp

log = logging.getLogger(__name__)

#: How far back a take-over reads the stamps: 7 hours, past the 6 h ``consumer_timeout``
#: the README asks for (a message cannot stay unacknowledged longer).
LOOKBACK_S = 7 * 3600


def acked_record(ids: list[str]) -> bytes:
    """The record naming the stamps of messages just acknowledged."""
    return orjson.dumps({"acked": ids})


class ReplicatedStamps:
    """Gives out stamps, queues their records for the stream, and hands back the
    unacknowledged stamps of a dead collector to the redeliveries."""

    def __init__(self, instance: str, partition_of: Callable[[str], int]) -> None:
        self._partition_of = partition_of
        self._epoch = f"{instance}/{uuid.uuid4().hex[:12]}"
        self._seq = 0
        self._last: dict[str, int] = {}
        self._unacked: dict[tuple[str, str], deque[int]] = defaultdict(deque)
        #: Records to append (and have confirmed) before this batch's readings are written,
        #: with the partition whose stamp stream takes each.
        self.pending: list[tuple[int, bytes]] = []
        #: Ids of the stamps given to each message of the batch being processed (by the
        #: message's ``id()``: one batch's messages are alive until it is written), for the
        #: ``acked`` record once the message is acknowledged.
        self.given: dict[int, list[str]] = {}
        #: Stamps given back to redeliveries since start.
        self.reused = 0

    def stamp(self, msg: Inbound, device: str) -> Stamp:
        """The stamp for the reading of ``msg`` (a message without ``ts``) from ``device``."""
        key = message_key(msg)  # packet id 0: AMQP has none
        waiting = self._unacked.get((device, key))
        last = self._last.get(device, 0)
        if msg.redelivered and waiting:
            ts_ms, moved = waiting.popleft(), False
            self.reused += 1
        else:
            ts_ms, moved = next_stamp(msg.received_ms, last)
        self._last[device] = max(last, ts_ms)
        self._seq += 1
        stamp_id = f"{self._epoch}/{self._seq}"
        self.pending.append((self._partition_of(device), orjson.dumps(
            {"id": stamp_id, "d": device, "k": key, "ts": ts_ms})))
        self.given.setdefault(id(msg), []).append(stamp_id)
        return Stamp(ts_ms, moved)

    def take_pending(self) -> tuple[list[tuple[int, bytes]], dict[int, list[str]]]:
        """The records to append and the stamp ids given to each message (by its ``id()``)
        since the last call: a batch's."""
        pending, given = self.pending, self.given
        self.pending, self.given = [], {}
        return pending, given

    def load(self, records: list[bytes], devices: set[str]) -> int:
        """Take over ``devices``: their stamps in ``records`` (the stream, oldest first)
        that were never acknowledged wait for the redeliveries. How many."""
        for gone in [k for k in self._unacked if k[0] in devices]:
            del self._unacked[gone]
        stamped: dict[str, tuple[str, str, int]] = {}
        acked: set[str] = set()
        for body in records:
            try:
                record = orjson.loads(body)
                if "acked" in record:
                    acked.update(record["acked"])
                elif record["d"] in devices:
                    stamped[record["id"]] = (record["d"], record["k"], int(record["ts"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("an unreadable record in the stamp stream was skipped")
        waiting = 0
        for stamp_id, (device, key, ts_ms) in stamped.items():
            self._last[device] = max(self._last.get(device, 0), ts_ms)
            if stamp_id not in acked:
                self._unacked[(device, key)].append(ts_ms)
                waiting += 1
        return waiting

    def learn(self, device: str, ts_ms: int) -> None:
        """A device's last reading time (from InfluxDB): fresh stamps come after it."""
        if ts_ms > self._last.get(device, 0):
            self._last[device] = ts_ms
