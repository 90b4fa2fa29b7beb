"""The synchronous middle of the flow: one message -> what to write, what to keep, what to tell.

    Inbound --decode--> Decoded --stamp--> --enrich--> Point --encode--> line     (ingest)
         \\______________\\________________________\\____> Reject (reason, detail)
                                Decoded --detect--> Alert --encode--> line      (analytics)

Ingest first: decode, enrich and encode alone decide what is written. Detection runs after,
over what was accepted, in its own guard: a failing rule is the detect stage's to count and
log, and never drops, dead-letters or half-applies a message. An unexpected error in ingest
itself (a bug of ours) turns the message into an ``internal_error`` refusal, kept for replay.

No I/O of its own and no event loop: the ends (source, sink, dead letters, the stamp
journal) are wired in ``app.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from collector.decode import Decoded, Decoder
from collector.detect.alerts import Alert
from collector.detect.stage import DetectStage
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.records import Inbound, Reject
from collector.sink.lineprotocol import encode
from collector.stamps import Stamp

log = logging.getLogger(__name__)

#: Gives a reading without ``ts`` of (message, device) its stamp.
Stamper = Callable[[Inbound, str], Stamp]
#: Which accepted readings detection sees (cluster mode: not those redelivered).
Fresh = Callable[[list[Decoded]], list[Decoded]]


@dataclass(frozen=True, slots=True)
class Processed:
    """What one message produced: lines to write (readings, then alert points), refusals to
    keep, alert transitions to publish, and how many readings were stamped on receipt."""

    lines: tuple[bytes, ...]
    rejects: tuple[Reject, ...]
    alerts: tuple[Alert, ...]
    stamped: int


class Pipeline:
    """Decode, stamp, enrich and encode one message, then detect; counting what happens."""

    def __init__(self, decoder: Decoder, enricher: Enricher, counters: Counters,
                 detect: DetectStage | None = None, stamper: Stamper | None = None,
                 fresh: Fresh | None = None) -> None:
        self._decoder = decoder
        self._enricher = enricher
        self._counters = counters
        self._detect = detect
        self._stamper = stamper
        self._fresh = fresh

    def process(self, msg: Inbound) -> Processed:
        """Everything one message produces."""
        counters = self._counters
        counters.received += 1
        counters.redelivered += msg.redelivered
        try:
            accepted, lines, rejects, stamped = self._ingest(msg)
        except Exception as exc:
            # A bug of ours must not stop the collector nor lose the message: it is kept
            # in the dead letters, to be replayed once the bug is fixed.
            log.exception("internal error on a message from %s", msg.topic)
            accepted, lines, stamped = [], [], 0
            rejects = [Reject(msg.topic, msg.payload, "internal_error",
                              f"{type(exc).__name__}: {exc}", msg.received_ms)]
        counters.accepted += len(lines)
        for reject in rejects:
            counters.reject(reject.reason)
        alerts: list[Alert] = []
        if self._fresh is not None and accepted:
            accepted = self._fresh(accepted)
        if self._detect is not None and accepted:
            alerts = self._detect.observe_many(accepted)
            counters.alerts += len(alerts)
            lines.extend([encode(alert.point()) for alert in alerts])
        return Processed(tuple(lines), tuple(rejects), tuple(alerts), stamped)

    def _ingest(self, msg: Inbound) -> tuple[list[Decoded], list[bytes], list[Reject], int]:
        decoded, rejects = self._decoder.decode(msg)
        accepted: list[Decoded] = []
        lines: list[bytes] = []
        stamped = 0
        for item in decoded:
            if item.unstamped and self._stamper is not None and \
                    self._enricher.knows(item.where.device):
                stamp = self._stamper(msg, item.where.device)
                item = replace(item, ts_ms=stamp.ts_ms, moved=stamp.moved)
                stamped += 1
            out = self._enricher.enrich(item, msg.topic, msg.received_ms)
            if isinstance(out, Reject):
                rejects.append(out)
            else:
                lines.append(encode(out))
                accepted.append(item)
        return accepted, lines, rejects, stamped
