"""The detector snapshot: written in parts with the event loop running between them, read
back whole; a file torn after its first parts keeps them; an older version still reads; the
periodic snapshot writes a segment at a time, and a crash keeps the newest of each device."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.detect import stage as stage_module
from collector.detect.alerts import AlertBook
from collector.detect.daily import Daily, for_device
from collector.detect.stage import SNAPSHOT_SEGMENTS, DetectStage, _read_parts, segment_path
from collector.settings import DetectSettings
from tests.detect.test_rules import REGISTRY


def _stage_with(entries: int) -> DetectStage:
    """A stage holding ``entries`` devices' rule state and last-seen times (as a fleet's
    would; the values are what the checks on reading accept)."""
    stage = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    for i in range(entries):
        stage._state[f"d{i}"] = {"energy_kwh": float(i)}
        stage._seen[f"d{i}"] = (i, 60_000.0)
    return stage


def test_the_snapshot_is_taken_a_part_at_a_time_with_the_loop_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_module, "SNAPSHOT_PART", 10)
    stage = _stage_with(200)
    ticks = 0
    at_part: list[int] = []          # the other task's ticks as each part was pickled
    parts = stage._snapshot_parts

    def watched(segment: int | None = None) -> Iterator[bytes]:
        for part in parts(segment):
            at_part.append(ticks)
            yield part

    monkeypatch.setattr(stage, "_snapshot_parts", watched)

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        beside = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        await stage.snapshot_async(tmp_path / "s")
        beside.cancel()

    asyncio.run(main())
    assert len(at_part) == 41        # the header, then 200 + 200 entries in tens
    assert all(b > a for a, b in itertools.pairwise(at_part)), "the loop ran between parts"
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(tmp_path / "s")
    assert again._state == stage._state and again._seen == stage._seen
    stage.snapshot(tmp_path / "t")  # in one go: the same content
    assert _read_parts((tmp_path / "t").read_bytes()) == \
        _read_parts((tmp_path / "s").read_bytes())


def test_a_file_torn_after_its_first_parts_keeps_them_and_is_set_aside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_module, "SNAPSHOT_PART", 10)
    stage = _stage_with(100)
    path = tmp_path / "detect-state.pickle"
    stage.snapshot(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])          # torn in the rule state's fourth part
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(path)
    assert 10 <= len(again._state) < 100
    assert all(again._state[d] == stage._state[d] for d in again._state)
    assert not path.exists() and len(list(tmp_path.glob("detect-state.pickle.bad-*"))) == 1


def test_a_version_2_snapshot_still_reads(tmp_path: Path) -> None:
    stage = _stage_with(3)
    path = tmp_path / "s"
    path.write_bytes(pickle.dumps({"version": 2, "state": stage._state, "detectors": {},
                                   "seen": stage._seen}))
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(path)
    assert again._state == stage._state and path.exists()


@pytest.mark.parametrize("readings", [200, 1500, 1530])   # in its warm-up; past it, mid-fold
def test_a_pickled_pair_goes_on_as_the_original(readings: int) -> None:
    """The readings a pair holds are pickled stacked (one array, not one a reading)."""
    rng = np.random.default_rng(5)
    rows = rng.normal(0, 1, (readings + 1600, 3)) + np.array([50, 20, 7])   # past warm-up
    det = for_device(3, 1440, 0.01)
    for i, row in enumerate(rows[:readings]):
        det.update(row, i // 60 % 24)
    copy = pickle.loads(pickle.dumps(det))
    assert isinstance(copy, Daily)
    rest = list(enumerate(rows[readings:], start=readings))
    scores = [det.update(r, i // 60 % 24) for i, r in rest]
    assert [copy.update(r, i // 60 % 24) for i, r in rest] == scores
    assert any(scores)


def test_two_snapshots_at_once_write_one_after_the_other(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic snapshot may still be writing when the one at shutdown starts: two
    writers of one temporary file would tear it."""
    stage = _stage_with(50)
    spans: list[tuple[float, float]] = []

    def slow_write(path: Path, data: bytes) -> None:
        started = time.monotonic()
        time.sleep(0.05)
        (tmp_path / "written").write_bytes(data)
        spans.append((started, time.monotonic()))

    monkeypatch.setattr(stage_module, "write_atomic", slow_write)

    async def main() -> None:
        await asyncio.gather(stage.snapshot_async(tmp_path / "s"),
                             stage.snapshot_async(tmp_path / "s"))

    asyncio.run(main())
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end


def test_the_periodic_snapshot_writes_a_segment_at_a_time_and_a_crash_keeps_the_newest(
        tmp_path: Path) -> None:
    """Each periodic snapshot writes one segment (a tenth of the devices); after a crash the
    state comes back from the last whole snapshot with each segment written since over it;
    the next whole snapshot (at shutdown) removes the segments, which are older than it."""
    path = tmp_path / "detect-state.pickle"
    stage = _stage_with(200)
    stage.snapshot(path)                        # the last shutdown
    for i in range(200):
        stage._state[f"d{i}"] = {"energy_kwh": 1000.0 + i}    # learnt since
    stage._state["new"] = {"energy_kwh": 7.0}
    stage._seen["new"] = (1, 60_000.0)

    async def periodic(segments: range) -> None:
        for segment in segments:
            await stage.snapshot_async(path, segment)

    asyncio.run(periodic(range(3)))             # three minutes, then a crash
    written = {d for d in stage._state if stage._segment_of(d) < 3}
    assert 0 < len(written) < 201
    sizes = [len(_read_parts(segment_path(path, k).read_bytes())[0]["state"]) for k in range(3)]
    assert sum(sizes) == len(written) and max(sizes) < 50, "a segment holds its devices only"
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(path)
    assert set(again._state) == set(stage._state) - ({"new"} - written)
    for device, entries in again._state.items():
        newest = device in written
        assert entries == (stage._state[device] if newest else {"energy_kwh": float(
            device[1:])}), device
    asyncio.run(stage.snapshot_async(path))     # the next shutdown: the whole state
    assert not any(segment_path(path, k).exists() for k in range(SNAPSHOT_SEGMENTS))
    last = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    last.restore(path)
    assert last._state == stage._state and last._seen == stage._seen


def test_a_torn_segment_keeps_its_first_parts_and_the_others_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_module, "SNAPSHOT_PART", 5)
    path = tmp_path / "detect-state.pickle"
    stage = _stage_with(300)
    asyncio.run(stage.snapshot_async(path, 0))
    asyncio.run(stage.snapshot_async(path, 1))
    torn = segment_path(path, 0)
    data = torn.read_bytes()
    torn.write_bytes(data[:len(data) // 2])
    again = DetectStage(REGISTRY, DetectSettings(), AlertBook())
    again.restore(path)
    first = {d for d in stage._state if stage._segment_of(d) == 0}
    second = {d for d in stage._state if stage._segment_of(d) == 1}
    assert second <= set(again._state) and 0 < len(first & set(again._state)) < len(first)
    assert not torn.exists() and len(list(tmp_path.glob("detect-state.pickle.0.bad-*"))) == 1
