"""The collector service: the only place that wires the stages together.

    MqttSource --Inbound, Ticket--> Pipeline (decode, enrich, encode) --lines--> Batcher
        ^                                  \\--Reject--> DeadLetterStore           |
        |                                                                          v
        +---- ack once durable <------ DurableSink: InfluxDB, or the spool and its replayer

Start order is sink first, source last. Stop order is the reverse: stop taking from the
broker, flush what is pending (to InfluxDB or the spool), let the acknowledgements go out,
write a last self-metrics point, then disconnect.

The ingest path (source, pipeline, batcher, sink, replayer) is the only thing whose failure
stops the collector. The side jobs (self-metrics, the health and silence watch, snapshots,
KPI) run under a :class:`Supervisor` that logs, counts and restarts them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from collector import goal, kpi
from collector.deadletter import INFLUX_TOPIC, DeadLetterStore, to_json
from collector.decode import Decoder
from collector.detect.alerts import Alert, AlertBook
from collector.detect.stage import SNAPSHOT_SEGMENTS, DetectStage
from collector.enrich import Enricher
from collector.errors import ConfigError, StorageError, WriteError
from collector.health import Health
from collector.health import Reading as HealthReading
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Claim, Inbound, Reject, Source
from collector.settings import Settings
from collector.sink.batcher import Batcher
from collector.sink.durable import DurableSink
from collector.sink.influx import InfluxWriter
from collector.sink.lineprotocol import encode
from collector.sink.retry import RetryingWriter, backoff
from collector.sink.spool import Spool
from collector.source import MqttSource
from collector.stamps import StampJournal
from collector.supervise import Supervisor
from devices import registry, topics
from devices.schema import Point

log = logging.getLogger(__name__)

#: Besides one request timeout, how long a shutdown may spend flushing.
SHUTDOWN_FLUSH_S = 10.0


class Collector:
    """One running collector. ``await Collector(settings).run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        storage = settings.storage
        #: (city, community, name) of the registry's communities, for community_info
        self._names: list[tuple[str, str, str]] = []
        self.counters = Counters()
        self.deadletters = DeadLetterStore(storage.dir, int(storage.deadletter_max_mb * 2**20))
        self.spool = Spool(storage.dir / "spool", int(storage.spool_max_mb * 2**20))
        self.stamps = StampJournal(storage.dir / "stamps")
        self.health = Health(settings.metrics.instance, storage.spool_alert_pct,
                             settings.metrics.stall_alert_s)
        self.book = AlertBook(storage.dir / "alerts.json")
        self.detect_state = storage.dir / "detect-state.pickle"
        self.supervisor = Supervisor()
        self._started = time.time()
        self._publish: Callable[[Alert], object] = lambda alert: None
        self._detect: DetectStage | None = None
        self._writer: RetryingWriter | None = None
        self._sink: DurableSink | None = None
        #: Cluster mode: refusals go to the replicated dead-letter stream.
        self._keeper: Callable[[bytes, dict[str, Any]], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        #: Cluster mode: what must be replicated before a batch's lines are written.
        self._before_write: Callable[[Sequence[tuple[Inbound, Claim]]], Awaitable[None]] | \
            None = None
        self._more_metrics: Callable[[], dict[str, int]] = dict
        #: Cluster mode: the last thing done before the source closes (the detector state).
        self._on_stop: Callable[[], Awaitable[object]] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set, then flush and return.

        Raises:
            ConfigError: in ``amqp`` mode, the cluster lacks the topology (named).
        """
        s = self.settings
        reg = registry.load(s.registry.path)
        self._names = [(c.city, c.id, c.name) for c in reg.communities.values()]
        log.info("registry %s: %d communities, %d devices", s.registry.path,
                 len(reg.communities), len(reg.devices))
        if s.source.kind == "amqp":
            await self._run_cluster(reg, stop)
            return
        self.book.load()
        detect = self._detect = DetectStage(reg, s.detect, self.book, s.ui.language)
        detect.restore(self.detect_state)
        try:
            self.deadletters.open()
        except StorageError as exc:   # a full disk at start: refusals wait until it has room
            log.error("%s; refused messages will be held until they can be kept", exc)
        self.spool.open()
        self.stamps.open()
        pipeline = Pipeline(Decoder(s.validation, s.mqtt.topic_root), Enricher(reg),
                            self.counters, detect, self.stamps.stamp)
        try:
            async with InfluxWriter(s.influx) as writer:
                retrying = self._writer = RetryingWriter(writer, s.influx, self._bad_line,
                                                         self.counters)
                sink = self._sink = DurableSink(retrying, self.spool, self.counters,
                                   retry_max_s=s.influx.retry_max_s)
                batcher = Batcher(s.influx, sink.deliver)
                source = MqttSource(s.mqtt, topics.subscriptions(s.mqtt.topic_root),
                                    batcher.flush_held, s.influx.batch_size)
                kpi_job = functools.partial(self._kpi, reg, writer, None)
                await self._serve(pipeline, source, batcher, detect, stop, kpi_job,
                                  [sink.replay])
        finally:
            self.stamps.close()
            self.deadletters.close()

    async def _run_cluster(self, reg: registry.Registry, stop: asyncio.Event) -> None:
        """The ``amqp`` source: the replicated queues are the buffer, so nothing is spooled
        or dead-lettered on this machine's disk, and state comes from InfluxDB on take-over
        (README, "Scaling out")."""
        from collector.cluster import topology
        from collector.cluster.broker import connect
        from collector.cluster.detectorstate import StateKeeper
        from collector.cluster.source import AmqpSource
        from collector.cluster.stamps import ReplicatedStamps
        from collector.cluster.takeover import LastSeen, Takeover

        s = self.settings
        connection, _ = await connect(s.amqp, name=f"sct check {s.metrics.instance}")
        try:
            lacking = await topology.missing(connection, s.amqp, s.mqtt.topic_root,
                                             sorted(reg.communities))
        finally:
            await connection.close()
        if lacking:
            raise ConfigError("the cluster lacks " + "; ".join(lacking) +
                              " (run: sct cluster setup --registry FILE)")
        detect = self._detect = DetectStage(reg, s.detect, self.book, s.ui.language)
        last = LastSeen()
        stamps = ReplicatedStamps(s.metrics.instance, lambda device: takeover
                                  .partition_of_device(device))
        pipeline = Pipeline(Decoder(s.validation, s.mqtt.topic_root), Enricher(reg),
                            self.counters, detect, stamps.stamp, last.fresh)
        async with InfluxWriter(s.influx) as writer:
            # No spool: a batch is acknowledged once InfluxDB has it, retried until then.
            retrying = self._writer = RetryingWriter(writer, s.influx, self._bad_line,
                                                     self.counters)
            batcher = Batcher(s.influx, retrying.write)
            source = AmqpSource(s.amqp, s.metrics.instance, batcher.flush_held,
                                stall_flush_ms=s.mqtt.stall_flush_ms)
            names = topology.Names(s.amqp.prefix)
            keeper = StateKeeper(s.metrics.instance, detect, lambda n: takeover.devices(n),
                                 lambda: source.active, lambda n, bodies: source.append(
                                     "", bodies, routing_key=names.state(n)))
            # The newest complete snapshot is at most one interval old, give or take a save.
            takeover = Takeover(reg, s.amqp.partitions, detect, last, writer.query, stamps,
                                names, source.read, keeper, 2 * s.amqp.state_every_s + 300)
            source.on_partition(takeover.warm, takeover.forget)
            self._on_stop = keeper.save
            self._keeper = source.keep

            async def before_write(batch: Sequence[tuple[Inbound, Claim]]) -> None:
                records, given = stamps.take_pending()
                if records:
                    await source.record_stamps(batch, records, given)

            self._before_write = before_write
            self._more_metrics = lambda: {"stamps_reused": stamps.reused,
                                          "detector_states_saved": keeper.saved,
                                          "detector_states_resumed": keeper.resumed,
                                          "redelivered_not_detected": last.skipped,
                                          "takeover_warmup_ms": int(
                                              takeover.last_warmup_s * 1000)}
            kpi_job = functools.partial(self._kpi, reg, writer,
                                        lambda: takeover.communities(source.active))
            keep_state = functools.partial(self.supervisor.run, "detector state",
                                           lambda: keeper.run(s.amqp.state_every_s))
            await self._serve(pipeline, source, batcher, detect, stop, kpi_job, [keep_state])

    async def _serve(self, pipeline: Pipeline, source: Source, batcher: Batcher,
                     detect: DetectStage, stop: asyncio.Event,
                     kpi_job: Callable[[], Awaitable[list[Point]]],
                     more: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
        root = self.settings.mqtt.topic_root
        self._publish = lambda alert: source.publish(alert.topic(root), alert.payload())

        async def handle(batch: Sequence[tuple[Inbound, Claim]]) -> None:
            await self.handle_many(pipeline, batcher, batch)

        _tune_gc()
        side = self.supervisor.run
        async with asyncio.TaskGroup() as group:
            background = [
                group.create_task(batcher.run()), *(group.create_task(job()) for job in more),
                group.create_task(side("metrics", lambda: self._report(batcher, source))),
                group.create_task(side("watch", lambda: self._watch(batcher, detect))),
                group.create_task(side("kpi", lambda: self._kpi_schedule(batcher, kpi_job)))]
            taking = group.create_task(source.run(handle))
            await stop.wait()
            source.stop_taking()
            log.info("stopping: no longer taking messages; flushing %d pending lines",
                     batcher.pending)
            await self._flush(batcher, source)
            await self._save_state(detect)
            if self._on_stop is not None:
                try:
                    await asyncio.wait_for(self._on_stop(), SHUTDOWN_FLUSH_S)
                except Exception as exc:    # the state is a convenience: never block a stop
                    log.error("shutdown: the detector state was not saved (%s: %s); a take-"
                              "over resumes from the last saved one", type(exc).__name__, exc)
            source.close()
            await taking
            for task in background:
                task.cancel()

    async def handle(self, pipeline: Pipeline, batcher: Batcher, msg: Inbound,
                     ticket: Claim) -> None:
        """One message through the pipeline (see :meth:`handle_many`)."""
        await self.handle_many(pipeline, batcher, [(msg, ticket)])

    async def handle_many(self, pipeline: Pipeline, batcher: Batcher,
                          batch: Sequence[tuple[Inbound, Claim]]) -> None:
        """Messages through the pipeline, stage by stage over the batch; then, message by
        message in order, refusals kept, alerts published and lines handed to the batcher.

        A message's ticket is held by each batch its lines are in until that batch is
        durable, and by the handler until its refusals are kept.
        """
        done = pipeline.process_many([msg for msg, _ in batch])
        if self._before_write is not None:
            # Cluster mode: the batch's stamps replicated before any of its lines is written.
            await self._before_write(batch)
        for (_, ticket), out in zip(batch, done, strict=True):
            for reject in out.rejects:
                await self._keep(reject)
            for alert in out.alerts:
                self._publish(alert)
            if out.lines:
                await batcher.add_many(out.lines, ticket)
            ticket.release()

    async def _save_state(self, detect: DetectStage | None, segment: int | None = None
                          ) -> bool:
        """Save the open alerts (and the detector state, when given: the whole of it, or
        only ``segment``); False when the disk would not take them (full): logged, and tried
        again next time. Not in cluster mode: there a collector's state is rebuilt from
        InfluxDB when it takes a partition over."""
        if self.settings.source.kind == "amqp":
            return True
        try:
            if detect is not None:
                await detect.snapshot_async(self.detect_state, segment)
            self.book.save()
        except OSError as exc:
            self.book.changed()
            log.error("could not save the detector state or the open alerts (%s); a restart "
                      "now would start from the last saved copy", exc)
            return False
        return True

    async def _flush(self, batcher: Batcher, source: Source) -> None:
        budget = SHUTDOWN_FLUSH_S + self.settings.influx.timeout_s
        try:
            await asyncio.wait_for(self._drain(batcher, source), budget)
        except TimeoutError:
            log.error("shutdown: %d lines not durable within %.0f s; their messages stay "
                      "unacknowledged and the broker will deliver them again",
                      batcher.pending, budget)
        log.info("stopped: %s", self.counters.summary(batcher.pending))

    async def _drain(self, batcher: Batcher, source: Source) -> None:
        await batcher.drain()
        for point in self._metrics_points(batcher, source):
            await batcher.add(encode(point))
        await batcher.drain()

    async def _watch(self, batcher: Batcher, detect: DetectStage) -> None:
        """Silent devices every few seconds; the detector state every ``snapshot_s``."""
        last_snapshot = time.monotonic()
        segment = 0     # the periodic snapshot writes one segment in turn (stage.py)
        while True:
            await asyncio.sleep(5.0)
            for alert in detect.tick(int(time.time() * 1000)):
                self.counters.alerts += 1
                self._publish(alert)
                await batcher.add(encode(alert.point()))
            due = time.monotonic() - last_snapshot >= self.settings.detect.snapshot_s
            if await self._save_state(detect if due else None, segment) and due:
                last_snapshot = time.monotonic()
                segment = (segment + 1) % SNAPSHOT_SEGMENTS

    async def _kpi(self, reg: registry.Registry, writer: InfluxWriter,
                   mine: Callable[[], set[str]] | None) -> list[Point]:
        """The indicators, stamped at the interval's start: computed twice in one interval
        (a take-over), the second overwrites the first. In cluster mode only the
        communities of the partitions this collector is active on (``mine``)."""
        interval_ms = int(self.settings.kpi.interval_s * 1000)
        stamp_ms = int(time.time() * 1000) // interval_ms * interval_ms
        kpis, _, points = await goal.evaluate(reg, writer.query, self.settings.kpi, stamp_ms,
                                              None if mine is None else mine())
        if mine is not None:
            log.info("KPI: %d communities computed (those of the partitions active here)",
                     len(kpis))
        return points

    async def _kpi_schedule(self, batcher: Batcher,
                            job: Callable[[], Awaitable[list[Point]]]) -> None:
        """The green-community indicators every ``kpi.interval_s`` (first after a minute);
        the communities' names at once, so the dashboards' community variable has them
        from the start."""
        for point in kpi.info_points(self._names, int(time.time() * 1000)):
            await batcher.add(encode(point))
        await asyncio.sleep(min(60.0, self.settings.kpi.interval_s))
        while True:
            try:
                for point in await job():
                    await batcher.add(encode(point))
            except WriteError as exc:
                log.warning("KPI job: InfluxDB cannot answer (%s); next try in %.0f s", exc,
                            self.settings.kpi.interval_s)
            await asyncio.sleep(self.settings.kpi.interval_s)

    async def _report(self, batcher: Batcher, source: Source) -> None:
        while True:
            await asyncio.sleep(self.settings.metrics.interval_s)
            log.info("%s", self.counters.summary(batcher.pending))
            for point in self._metrics_points(batcher, source):
                await batcher.add(encode(point))

    def _metrics_points(self, batcher: Batcher, source: Source) -> list[Point]:
        now = time.time()
        now_ms = int(now * 1000)
        extra = {"spool_lines": self.spool.lines, "spool_bytes": self.spool.size,
                 "deadletter_dropped": self.deadletters.dropped, **source.metrics(),
                 **self._more_metrics()}
        problems: tuple[str, ...] = ()
        if self._detect is not None:
            extra.update({f"detect_errors_{rule}": n
                          for rule, n in sorted(self._detect.errors.items())})
            problems = tuple(self._detect.registry_problems)
        extra.update({f"job_failures_{job}": n
                      for job, n in sorted(self.supervisor.failures.items())})
        writer = self._writer
        last_write = writer.last_write if writer else None
        alerts = self.health.check(HealthReading(
            self.spool.size, self.spool.max_bytes, batcher.pending + self.spool.lines,
            now - (last_write or self._started), bool(writer and writer.auth_failing),
            (self._sink.holding if self._sink else None) or self.deadletters.failing,
            problems), now_ms)
        return [self.counters.point(self.settings.metrics.instance, batcher.pending, now_ms,
                                    extra, last_write), *alerts]

    async def _keep(self, reject: Reject) -> None:
        """Keep a refusal; while the dead letters cannot be written (disk full) the message
        is held, unacknowledged, and the append retried with backoff."""
        log.debug("rejected %s on %s: %s", reject.reason, reject.topic, reject.detail)
        if self._keeper is not None:
            await self._keeper(to_json(reject), {"reason": reject.reason})
            return
        attempt = 0
        while True:
            try:
                self.deadletters.add(reject)
            except StorageError as exc:
                delay = backoff(attempt, 0.5, self.settings.influx.retry_max_s)
                attempt += 1
                log.error("%s; holding the message (unacknowledged), trying again in %.1f s",
                          exc, delay)
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info("dead letters can be written again")
            return

    def _bad_line(self, line: bytes, server_text: str) -> None:
        log.error("InfluxDB refused a line, kept in the dead letters: %s (%r)", server_text,
                  line[:200])
        reject = Reject(INFLUX_TOPIC, line, "influx_rejected", server_text,
                        int(time.time() * 1000))
        if self._keeper is not None:
            # In cluster mode to the replicated dead letters; not awaited (called from
            # inside a write), so logged whole above in case the cluster is unreachable.
            self._tasks.add(task := asyncio.ensure_future(self._keep(reject)))
            task.add_done_callback(self._tasks.discard)
            return
        try:
            self.deadletters.add(reject)
        except StorageError as exc:
            # Called from inside a write: the line is logged whole rather than lost unseen.
            log.error("dead letters cannot be written (%s); the refused line was: %r", exc,
                      line)


#: Container objects allocated (net of those freed) between two young garbage collections:
#: Python's default is 700.
GC_YOUNG = 10_000


def _tune_gc() -> None:
    """Fewer garbage collections, over fewer objects, once everything is loaded.

    Nearly every object the collector makes per message (the message, its ticket, the
    reading, its line) is freed by its reference count, not by the collector of cycles; but
    a message's ticket lives until its batch is written, so at Python's default threshold
    young collections came every few hundred messages and kept moving tickets into the old
    generations, which full collections then walked: 7-8 % of the collector's CPU in a drain
    of single readings (0.17-0.22 s in 2.4-2.6 s; 5 collections over 200,000 messages at
    this threshold, 0.005 s). What is loaded at start (the registry, the modules) is frozen:
    never walked again. Cyclic garbage, which the pipeline does not make, waits longer."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
