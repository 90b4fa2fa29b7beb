"""The statistical detectors' state in cluster mode: kept on the broker, resumed on take-over.

A device's ``t2`` detector learns for a day of readings before it scores (its warm-up,
README "Detection"). Were that state only in the memory of the collector that held the
device, every take-over (a collector killed, a rolling upgrade) would mute the statistical
alerts of the partition's devices for another day. So every ``amqp.state_every_s``, and when
it stops, a collector appends the state of the detectors of each partition it is active on
to that partition's state stream (``<prefix>.state.<n>``, kept one day), in records of
``CHUNK`` devices; a collector taking the partition over reads back the newest complete
snapshot and resumes those devices where they were (:meth:`DetectStage.resume_statistical`).

The state is plain numbers checked on the way in (:class:`T2State`), never a pickle: a
record on the broker cannot make a collector run code. About 1 KB a watched device of JSON
a snapshot. What a take-over still loses: what the devices learnt since the last snapshot
(at most ``state_every_s``; at a forgetting of 0.001 a reading, little), and the warm-up of
devices still in it (they start it again).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from collector.detect.stage import DetectStage

log = logging.getLogger(__name__)

#: Devices a record: about half a megabyte of JSON.
CHUNK = 500


def records(states: dict[str, Any], snapshot: str) -> list[bytes]:
    """One partition's snapshot as stream records (at least one, so an empty snapshot is
    a complete one too)."""
    items = sorted(states.items())
    chunks = [dict(items[i:i + CHUNK]) for i in range(0, len(items), CHUNK)] or [{}]
    return [orjson.dumps({"snapshot": snapshot, "chunk": i, "of": len(chunks), "states": c})
            for i, c in enumerate(chunks)]


def newest(bodies: list[bytes]) -> tuple[dict[str, Any], int]:
    """The device states of the newest complete snapshot in ``bodies`` (a state stream's
    records, oldest first; a snapshot cut short by a dying collector is passed over), and how
    many records were unreadable."""
    parts: dict[str, dict[int, dict[str, Any]]] = {}
    sizes: dict[str, int] = {}
    unreadable = 0
    for body in bodies:
        try:
            record = orjson.loads(body)
            snapshot, chunk, of = record["snapshot"], record["chunk"], record["of"]
            states = record["states"]
            if not (isinstance(snapshot, str) and isinstance(states, dict)
                    and isinstance(chunk, int) and isinstance(of, int) and 0 <= chunk < of):
                raise ValueError("not a state record")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unreadable += 1
            continue
        parts.setdefault(snapshot, {})[chunk] = states
        sizes[snapshot] = of
    for snapshot in reversed(list(parts)):        # dicts keep the order records came in
        if len(parts[snapshot]) == sizes[snapshot]:
            merged: dict[str, Any] = {}
            for states in parts[snapshot].values():
                merged.update(states)
            return merged, unreadable
    return {}, unreadable


class StateKeeper:
    """Saves the active partitions' detector state now and then; resumes a partition's."""

    def __init__(self, instance: str, detect: DetectStage,
                 devices_of: Callable[[int], list[str]], active: Callable[[], set[int]],
                 append: Callable[[int, list[bytes]], Awaitable[None]]) -> None:
        self._detect = detect
        self._devices_of = devices_of
        self._active = active
        self._append = append
        self._epoch = f"{instance}/{uuid.uuid4().hex[:12]}"
        self._seq = 0
        # Partitions whose take-over is done: before that, a snapshot of this collector's
        # (empty) detectors would become the newest and hide the one to resume from.
        self._ready: set[int] = set()
        #: Devices whose state was saved in the last round, and resumed since start.
        self.saved = 0
        self.resumed = 0

    async def save(self) -> int:
        """Append a snapshot of each active partition's detectors (confirmed): how many
        devices' state were saved."""
        saved = 0
        for n in sorted(self._active() & self._ready):
            states = self._detect.statistical_states(self._devices_of(n))
            self._seq += 1
            await self._append(n, records(states, f"{self._epoch}/{self._seq}"))
            saved += len(states)
        self.saved = saved
        log.debug("detector state of %d devices saved", saved)
        return saved

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.save()

    def ready(self, n: int) -> None:
        """Partition ``n``'s take-over is done (resumed, or started cold): save it from now."""
        self._ready.add(n)

    def lost(self, partitions: set[int]) -> None:
        self._ready -= partitions

    def resume(self, n: int, bodies: list[bytes]) -> int:
        """Resume partition ``n``'s devices from its state stream's records: how many."""
        self.ready(n)
        states, unreadable = newest(bodies)
        mine = set(self._devices_of(n))
        resumed, refused = self._detect.resume_statistical(
            {d: s for d, s in states.items() if d in mine})
        if unreadable or refused:
            log.warning("partition %d: %d unreadable state records, %d device states refused "
                        "(those devices start their warm-up again)", n, unreadable, refused)
        self.resumed += resumed
        return resumed
