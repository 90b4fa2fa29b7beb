"""The benchmarks' readings are what they claim to be: every field of a lit streetlight,
raising no alert, however many lamps they are sent round (the drains and live loads send
reading i to lamp i mod n; the live load keeps one lamp for its probes)."""

from __future__ import annotations

import time

import pytest

from bench.readings import KIND, lamps, lit_streetlight, messages_of, readings
from collector.decode import Decoder
from collector.detect.alerts import AlertBook
from collector.detect.stage import DetectStage
from collector.enrich import Enricher
from collector.metrics import Counters
from collector.pipeline import Pipeline
from collector.records import Inbound
from collector.settings import DetectSettings, ValidationSettings
from devices.payloads import TELEMETRY_MODELS, reading_types
from devices.registry import from_mapping
from simulators.registry_gen import generate

MAPPING = generate(2, seed=1)
LAMPS = lamps(MAPPING)


def test_a_reading_carries_every_field_of_its_kind() -> None:
    fields = {name for name, _ in reading_types(TELEMETRY_MODELS[KIND])}
    assert set(lit_streetlight(7, 0)) == fields | {"ts"}


@pytest.mark.parametrize("n", [1, 5, 6, 30, 48, 49])
def test_readings_sent_round_n_lamps_raise_no_alert(n: int) -> None:
    # 48 is the live bench's fleet (49 lamps less the probe's): with values taken from i
    # mod 6 every one of them raised value_stuck after 30 readings.
    registry = from_mapping(MAPPING)
    pipeline = Pipeline(Decoder(ValidationSettings(), "sc"), Enricher(registry), Counters(),
                        DetectStage(registry, DetectSettings(), AlertBook()))
    now = int(time.time() * 1000)
    count = 100 * n    # a hundred readings a lamp: past the stuck rule's 30
    written, alerts = 0, []
    # As the drains build their messages (the live load sends the same readings round its
    # lamps in the same way).
    for topic, payload in messages_of(readings(count, now - count), LAMPS[:n], 1):
        out = pipeline.process(Inbound(topic, payload, now))
        written += len(out.lines) - len(out.alerts)
        alerts.extend(out.alerts)
    assert written == count
    assert [(a.rule, a.device) for a in alerts] == []
