"""``sct deadletter replay``: stored refusals through the pipeline again.

For when the cause is gone: a device added to the registry, a limit raised, InfluxDB's
field-type conflict resolved. Each record goes through decode and enrich with today's
configuration and registry, keeping its original receive time; what passes is written to
InfluxDB (a refused line is simply written again); what still fails is stored anew with its
new reason. The old record is marked replayed only once its outcome is durable, so an
InfluxDB outage midway loses nothing: run it again.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from collector.deadletter import INFLUX_TOPIC, DeadLetterStore
from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound, Reject
from collector.settings import Settings
from collector.sink.influx import InfluxWriter
from collector.sink.retry import RetryingWriter
from devices import registry

BATCH_LINES = 5_000


@dataclass
class Outcome:
    """What a replay did."""

    replayed: int = 0
    written: int = 0
    still_failing: Counter[str] = field(default_factory=Counter)


async def replay(settings: Settings, reason: str | None) -> Outcome:
    """Replay the stored refusals (only ``reason`` when given).

    Raises:
        RetryableWriteError, AuthWriteError: InfluxDB cannot take the lines; everything not
            yet written stays in the dead letters as it was.
    """
    reg = registry.load(settings.registry.path)
    pipeline = Pipeline(Decoder(settings.validation, settings.mqtt.topic_root), Enricher(reg),
                        Counters())
    store = DeadLetterStore(settings.storage.dir,
                            int(settings.storage.deadletter_max_mb * 2**20))
    outcome = Outcome()
    lines: list[bytes] = []
    done: list[tuple[int, list[Reject]]] = []

    def refused(line: bytes, text: str) -> None:
        done.append((-1, [Reject(INFLUX_TOPIC, line, "influx_rejected", text,
                                 int(time.time() * 1000))]))

    async with InfluxWriter(settings.influx) as writer:
        retrying = RetryingWriter(writer, settings.influx, refused, Counters())

        async def commit() -> None:
            if lines:
                await retrying.try_write(lines)
                outcome.written += len(lines)
                lines.clear()
            for _offset, rejects in done:
                for reject in rejects:
                    store.add(reject)
                    outcome.still_failing[reject.reason] += 1
            store.mark_replayed([offset for offset, _ in done if offset >= 0])
            outcome.replayed += sum(offset >= 0 for offset, _ in done)
            done.clear()

        try:
            for offset, reject in list(store.records(reason)):
                new_lines, rejects = _again(pipeline, reject)
                lines.extend(new_lines)
                done.append((offset, rejects))
                if len(lines) >= BATCH_LINES:
                    await commit()
            await commit()
        finally:
            store.close()
    return outcome


def _again(pipeline: Pipeline, reject: Reject) -> tuple[list[bytes], list[Reject]]:
    if reject.topic == INFLUX_TOPIC:
        return [reject.payload], []
    done = pipeline.process(Inbound(reject.topic, reject.payload, reject.received_ms))
    return list(done.lines), list(done.rejects)
