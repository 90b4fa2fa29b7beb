"""The synchronous middle of the flow: one message -> line-protocol lines and refusals.

    Inbound --decode--> Decoded --enrich--> Point --encode--> line
         \\______________\\______________> Reject (reason, detail)
                               Decoded --detect--> Alert --encode--> line (+ published)

No I/O and no event loop: the ends (source, sink, dead letters) are wired in ``app.py``.
"""

from __future__ import annotations

import logging

from collector.decode import Decoder
from collector.detect.alerts import Alert
from collector.detect.stage import DetectStage
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.records import Inbound, Reject
from collector.sink.lineprotocol import encode

log = logging.getLogger(__name__)


class Pipeline:
    """Decode, enrich and encode one message, counting what happens."""

    def __init__(self, decoder: Decoder, enricher: Enricher, counters: Counters,
                 detect: DetectStage | None = None) -> None:
        self._decoder = decoder
        self._enricher = enricher
        self._counters = counters
        self._detect = detect
        #: The alert transitions of the last message, for the app to publish.
        self.alerts: list[Alert] = []
        #: True when the last message had a reading stamped with its receive time.
        self.stamped_on_receipt = False

    def process(self, msg: Inbound) -> tuple[list[bytes], list[Reject]]:
        """The lines to write and the refusals to keep for one message."""
        self._counters.received += 1
        self._counters.redelivered += msg.redelivered
        self.stamped_on_receipt = False
        self.alerts = []
        try:
            lines, rejects = self._process(msg)
        except Exception as exc:
            # A bug of ours must not stop the collector nor lose the message: it is kept
            # in the dead letters, to be replayed once the bug is fixed.
            log.exception("internal error on a message from %s", msg.topic)
            lines = []
            rejects = [Reject(msg.topic, msg.payload, "internal_error",
                              f"{type(exc).__name__}: {exc}", msg.received_ms)]
        self._counters.accepted += len(lines) - len(self.alerts)
        self._counters.alerts += len(self.alerts)
        for reject in rejects:
            self._counters.reject(reject.reason)
        return lines, rejects

    def _process(self, msg: Inbound) -> tuple[list[bytes], list[Reject]]:
        decoded, rejects = self._decoder.decode(msg)
        self.stamped_on_receipt = any(d.body is not None and d.body.ts is None for d in decoded)
        lines: list[bytes] = []
        for item in decoded:
            out = self._enricher.enrich(item, msg.topic, msg.received_ms)
            if isinstance(out, Reject):
                rejects.append(out)
            else:
                lines.append(encode(out))
                if self._detect is not None:
                    alerts = self._detect.observe(item)
                    self.alerts.extend(alerts)
                    lines.extend(encode(alert.point()) for alert in alerts)
        return lines, rejects
