"""The collector service: the only place that wires the stages together.

    MqttSource --Inbound--> Pipeline (decode, enrich, encode) --lines--> Batcher --> InfluxDB
                                   \\--Reject--> DeadLetterStore

Start order is sink first, source last; stop order is the reverse: stop taking from the
broker, flush what is pending, write a last self-metrics point, then close.
"""

from __future__ import annotations

import asyncio
import logging
import time

from collector.deadletter import DeadLetterStore
from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound, Reject
from collector.settings import Settings
from collector.sink.batcher import Batcher
from collector.sink.influx import InfluxWriter
from collector.sink.lineprotocol import encode
from collector.sink.retry import RetryingWriter
from collector.source import MqttSource
from devices import registry, topics
from devices.schema import Point

log = logging.getLogger(__name__)

#: How long a shutdown may spend flushing before it gives up and says what it left.
SHUTDOWN_FLUSH_S = 15.0


class Collector:
    """One running collector. ``await Collector(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.deadletters = DeadLetterStore(settings.storage.dir,
                                           int(settings.storage.deadletter_max_mb * 2**20))

    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set, then flush and return."""
        s = self.settings
        reg = registry.load(s.registry.path)
        log.info("registry %s: %d communities, %d devices", s.registry.path,
                 len(reg.communities), len(reg.devices))
        pipeline = Pipeline(Decoder(s.validation, s.mqtt.topic_root), Enricher(reg),
                            self.counters)
        self.deadletters.open()
        try:
            async with InfluxWriter(s.influx) as writer:
                retrying = RetryingWriter(writer, s.influx, self._bad_line, self.counters)
                batcher = Batcher(s.influx, retrying.write)
                await self._serve(pipeline, batcher, stop)
        finally:
            self.deadletters.close()

    async def _serve(self, pipeline: Pipeline, batcher: Batcher, stop: asyncio.Event) -> None:
        source = MqttSource(self.settings.mqtt, topics.subscriptions(self.settings.mqtt.topic_root))

        async def handle(msg: Inbound) -> None:
            lines, rejects = pipeline.process(msg)
            for reject in rejects:
                self._keep(reject)
            for line in lines:
                await batcher.add(line)

        async with asyncio.TaskGroup() as group:
            sink = group.create_task(batcher.run())
            reporter = group.create_task(self._report(batcher))
            taking = group.create_task(source.run(handle))
            await stop.wait()
            taking.cancel()
            log.info("stopping: no longer taking messages; flushing %d pending lines",
                     batcher.pending)
            await self._flush(batcher)
            reporter.cancel()
            sink.cancel()

    async def _flush(self, batcher: Batcher) -> None:
        try:
            await batcher.add(encode(self._metrics_point(batcher)))
            await asyncio.wait_for(batcher.drain(), SHUTDOWN_FLUSH_S)
        except TimeoutError:
            log.error("shutdown: InfluxDB did not take %d pending lines within %.0f s; "
                      "they are lost", batcher.pending, SHUTDOWN_FLUSH_S)
        log.info("stopped: %s", self.counters.summary(batcher.pending))

    async def _report(self, batcher: Batcher) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics.interval_s)
            log.info("%s", self.counters.summary(batcher.pending))
            await batcher.add(encode(self._metrics_point(batcher)))

    def _metrics_point(self, batcher: Batcher) -> Point:
        self.counters.deadletter_dropped = self.deadletters.dropped
        return self.counters.point(self.settings.metrics.instance, batcher.pending,
                                   int(time.time() * 1000))

    def _keep(self, reject: Reject) -> None:
        log.debug("rejected %s on %s: %s", reject.reason, reject.topic, reject.detail)
        self.deadletters.add(reject)

    def _bad_line(self, line: bytes, server_text: str) -> None:
        log.error("InfluxDB refused a line, kept in the dead letters: %s", server_text)
        self.deadletters.add(Reject("influx:write", line, "influx_rejected", server_text,
                                    int(time.time() * 1000)))
