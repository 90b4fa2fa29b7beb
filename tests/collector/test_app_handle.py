"""The collector's per-message step, in process: tickets and first stamps."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import SMALL_REGISTRY
from conftest import Claim as Ticket  # the handler's ticket, counting its holds

from collector.app import Collector
from collector.decode import Decoder
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import Settings, StorageSettings, ValidationSettings


class Batcher:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.claims: list[Ticket] = []

    async def add(self, line: bytes, claim: Ticket | None = None) -> None:
        self.lines.append(line)
        if claim is not None:
            self.claims.append(claim)

    async def add_many(self, lines: list[bytes], claim: Ticket) -> None:
        self.lines.extend(lines)      # one batch here: held once
        claim.hold()
        self.claims.append(claim)


def collector(tmp_path: Path) -> Collector:
    made = Collector(Settings(storage=StorageSettings(dir=tmp_path)))
    made.stamps.open()
    made.deadletters.open()
    return made


def handle(made: Collector, msg: Inbound) -> tuple[Batcher, Ticket]:
    pipeline = Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(SMALL_REGISTRY),
                        Counters(), stamper=made.stamps.stamp)
    batcher, ticket = Batcher(), Ticket()
    asyncio.run(made.handle(pipeline, batcher, msg, ticket))  # type: ignore[arg-type]
    return batcher, ticket


NOW = 1_795_000_000_000
TOPIC = "sc/c1/streetlight/lamp-1/telemetry"


def test_the_batch_holds_the_ticket_and_the_handler_lets_go(tmp_path: Path) -> None:
    made = collector(tmp_path)
    batcher, ticket = handle(made, Inbound(
        TOPIC, b'[{"dim_pct": 1, "ts": %d}, {"dim_pct": 2, "ts": %d}]' % (NOW, NOW + 1), NOW))
    assert len(batcher.lines) == 2 and ticket.holds == 1, "released only by the batch"
    _, rejected = handle(made, Inbound(TOPIC, b"{oops", NOW))
    assert rejected.holds == 0, "a refused message is acknowledged once dead-lettered"


def test_a_redelivery_keeps_its_first_stamp_across_a_restart(tmp_path: Path) -> None:
    payload = b'{"dim_pct": 40}'
    first, _ = handle(collector(tmp_path), Inbound(TOPIC, payload, NOW, packet_id=3))
    restarted = collector(tmp_path)
    again, _ = handle(restarted, Inbound(TOPIC, payload, NOW + 9_000, True, 3))
    fresh, _ = handle(restarted, Inbound(TOPIC, payload, NOW + 20_000, packet_id=3))
    assert first.lines[0].endswith(b" %d" % NOW)
    assert again.lines == first.lines, "the same point: InfluxDB overwrites, no duplicate"
    assert fresh.lines[0].endswith(b" %d" % (NOW + 20_000)), "a new message is a new reading"
