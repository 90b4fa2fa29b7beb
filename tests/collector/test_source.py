"""The MQTT connection and source: on an in-memory transport, and against a small scripted
broker on a loopback port (one that enforces an in-flight window, breaks the protocol, or
withholds acknowledgements), so each behaviour can be provoked exactly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from collector import mqttwire as wire
from collector.errors import BrokerError
from collector.records import Inbound
from collector.settings import MqttSettings
from collector.source import (
    GATHER_FIRST_S,
    GATHER_FOR,
    GATHER_MIN_S,
    Gathering,
    MqttSource,
    Outbox,
    Ticket,
    _Connection,
)


class Transport(asyncio.Transport):
    """Enough of an asyncio transport for one connection, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.paused = False
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True


def connection(high_water: int = 100) -> tuple[_Connection, Transport]:
    conn = _Connection(high_water)
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def pubacks(data: bytes) -> list[int]:
    assert len(data) % 4 == 0 and all(data[i] == 0x40 for i in range(0, len(data), 4))
    return [struct.unpack_from(">H", data, i + 2)[0] for i in range(0, len(data), 4)]


def messages(n: int, first_id: int = 1) -> bytes:
    return b"".join(wire.publish(f"sc/c/door/d{i}/telemetry", b"{}", first_id + i)
                    for i in range(n))


def test_tickets_released_out_of_order_acknowledge_in_arrival_order() -> None:
    async def go() -> None:
        conn, transport = connection()
        conn.data_received(messages(4, first_id=10))
        tickets = [ticket for _, ticket in conn.inbox]
        tickets[2].release()
        tickets[3].release()
        await asyncio.sleep(0)
        assert transport.written == b"", "10 is not settled: nothing may go out"
        tickets[0].release()
        await asyncio.sleep(0)
        assert pubacks(bytes(transport.written)) == [10]
        tickets[1].release()
        await asyncio.sleep(0)
        assert pubacks(bytes(transport.written)) == [10, 11, 12, 13]
        assert len(conn.acks) == 0

    asyncio.run(go())


def test_a_held_ticket_is_acknowledged_only_when_every_hold_is_released() -> None:
    async def go() -> None:
        conn, transport = connection()
        conn.data_received(messages(1, first_id=5))
        (_, ticket), = conn.inbox
        ticket.hold()               # a batch holds it
        ticket.release()            # the handler is done
        await asyncio.sleep(0)
        assert transport.written == b""
        ticket.release()            # the batch is durable
        await asyncio.sleep(0)
        assert pubacks(bytes(transport.written)) == [5]

    asyncio.run(go())


def test_reading_pauses_at_the_high_water_mark_and_resumes_at_half() -> None:
    async def go() -> None:
        conn, transport = connection(high_water=10)
        conn.subscribed = True
        conn.data_received(messages(9))
        assert not transport.paused
        conn.data_received(messages(1, first_id=50))
        assert transport.paused, "10 waiting: the socket is not read"
        for _ in range(4):
            conn.inbox.popleft()
        conn.resume_if_drained()
        assert transport.paused, "6 still waiting"
        conn.inbox.popleft()
        conn.resume_if_drained()
        assert not transport.paused, "down to half: read again"

    asyncio.run(go())


@pytest.mark.parametrize("garbage", [b"\x00\x00", b"\xf0\x00", b"\x30\x05\x00\x02\xff\xfex",
                                     b"\x30\xff\xff\xff\xff\x01", b"\x34\x05\x00\x01t\x00\x01"])
def test_garbage_from_the_broker_drops_the_connection_and_nothing_escapes(
        garbage: bytes) -> None:
    async def go() -> None:
        conn, transport = connection()
        conn.data_received(messages(2) + garbage)   # must not raise
        assert transport.aborted
        assert conn.lost.done()
        with pytest.raises(BrokerError):
            conn.lost.result()

    asyncio.run(go())


def test_the_outbox_resends_unacknowledged_publishes_with_dup_after_a_reconnect() -> None:
    outbox = Outbox(limit=3)
    first = bytearray()
    outbox.publish("sc/c/alert/door/d", b"one", first.extend)
    outbox.publish("sc/c/alert/door/d", b"two", first.extend)
    assert first[0] == 0x32 and len(outbox) == 2
    outbox.acknowledged(b"\x00\x01")               # the broker took "one"
    outbox.publish("sc/c/alert/door/d", b"three", None)   # disconnected: waits
    outbox.publish("sc/c/alert/door/d", b"four", None)
    outbox.publish("sc/c/alert/door/d", b"five", None)    # over the bound: oldest dropped
    assert outbox.dropped == 1 and len(outbox) == 3
    again = bytearray()
    outbox.resume(again.extend)
    seen = []
    wire.Parser(lambda t, p, pid, dup: seen.append((p, pid, dup)),
                lambda k, b: None).feed(bytes(again))
    assert seen == [(b"two", 2, True), (b"four", 3, False), (b"five", 4, False)]


# --- against a scripted broker on a loopback port -----------------------------------------

@dataclass
class Broker:
    """Serves ``count`` messages at most ``window`` unacknowledged at a time; resends what
    was not acknowledged, with DUP, after a reconnect; may break the protocol once."""

    count: int
    window: int = 1000
    garbage_after: int = 0          # on the first connection, after this many messages
    ack_ours_from: int = 1          # acknowledge the client's publishes from this connection
    answer_pings: bool = True
    connections: int = 0
    acked: set[int] = field(default_factory=set)
    pings: int = 0
    theirs: list[tuple[bytes, int, bool]] = field(default_factory=list)
    most_in_flight: int = 0
    pace_s: float = 0.0             # a live stream: one message this often
    #: A persistent session's backlog, as Mosquitto sends it: every message right after the
    #: CONNACK, the SUBACK only after the last (it queues behind them).
    backlog_first: bool = False
    payload: bytes = b"{}"

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await reader.readexactly(length)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first_connection = self.connections == 1
        in_flight: set[int] = set()
        more = asyncio.Event()
        sent = 0

        async def feed() -> None:
            nonlocal sent
            pending = [i for i in range(1, self.count + 1) if i not in self.acked]
            for pid in pending:
                while len(in_flight) >= self.window:
                    more.clear()
                    await more.wait()
                if first_connection and self.garbage_after and sent == self.garbage_after:
                    writer.write(b"\x00\x00")      # not MQTT
                    return
                in_flight.add(pid)
                self.most_in_flight = max(self.most_in_flight, len(in_flight))
                writer.write(wire.publish("sc/c/door/d/telemetry", self.payload, pid,
                                          dup=not first_connection))
                sent += 1
                await writer.drain()
                if self.pace_s:
                    await asyncio.sleep(self.pace_s)

        feeding: asyncio.Task[None] | None = None
        try:
            while True:
                first, body = await self._read(reader)
                kind = first >> 4
                if kind == wire.CONNECT:
                    writer.write(b"\x20\x02\x00\x00")
                    if self.backlog_first:
                        feeding = asyncio.create_task(feed())
                elif kind == wire.SUBSCRIBE:
                    suback = b"\x90\x03" + body[:2] + b"\x01"
                    if feeding is None:
                        writer.write(suback)
                        feeding = asyncio.create_task(feed())
                    else:
                        feeding.add_done_callback(lambda _, a=suback: writer.write(a))
                elif kind == wire.PUBACK:
                    pid = struct.unpack(">H", body)[0]
                    in_flight.discard(pid)
                    self.acked.add(pid)
                    more.set()
                elif kind == wire.PINGREQ:
                    self.pings += 1
                    if self.answer_pings:
                        writer.write(b"\xd0\x00")
                elif kind == wire.PUBLISH:
                    topic_len = struct.unpack(">H", body[:2])[0]
                    pid = struct.unpack(">H", body[2 + topic_len:4 + topic_len])[0]
                    self.theirs.append((body[4 + topic_len:], pid, bool(first & 0x08)))
                    if self.connections >= self.ack_ours_from:
                        writer.write(b"\x40\x02" + struct.pack(">H", pid))
                elif kind == wire.DISCONNECT:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            if feeding is not None:
                feeding.cancel()
            writer.close()


def settings(port: int, **kw: object) -> MqttSettings:
    return MqttSettings(url=f"mqtt://127.0.0.1:{port}", reconnect_min_s=0.05,
                        reconnect_max_s=0.2, **kw)  # type: ignore[arg-type]


async def consume(source: MqttSource, until: Callable[[], bool], timeout: float,
                  also: Callable[[], Awaitable[None]] | None = None) -> list[Inbound]:
    """Run ``source`` with a handler that holds every ticket until the source stalls (as the
    batcher does until its batch is written), until ``until()``."""
    got: list[Inbound] = []
    held: list[Ticket] = []

    async def handle(batch: Sequence[tuple[Inbound, Ticket]]) -> None:
        for msg, ticket in batch:
            got.append(msg)
            ticket.hold()
            held.append(ticket)
            ticket.release()

    async def written(now: bool) -> float:
        await asyncio.sleep(0.002)           # the write to InfluxDB
        for ticket in held:
            ticket.release()
        held.clear()
        return 0.0

    source._on_stall = written
    running = asyncio.create_task(source.run(handle))
    try:
        async with asyncio.timeout(timeout):
            if also is not None:
                await also()
            while not until():
                await asyncio.sleep(0.01)
    finally:
        source.stop_taking()
        source.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    return got


def test_a_small_window_drains_at_the_round_trip_and_is_learnt(
        caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        broker = Broker(count=1_000, window=20)
        port = await broker.start()
        source = MqttSource(settings(port), ["sc/#"], batch_hint=5000)
        with caplog.at_level(logging.WARNING, logger="collector.source"):
            got = await consume(source, lambda: len(broker.acked) == 1_000, timeout=20)
        assert len(got) == 1_000 and broker.most_in_flight == 20
        assert source.window.size == 20 and source.window.peak == 20
        assert "max_inflight_messages 0" in caplog.text and "mqtt.prefetch" in caplog.text
        assert caplog.text.count("sends at most 20") == 1, "warned once"
        # Its window is full before a pass would take more: gathering brought nothing and
        # was turned off (it would have added its length to every round trip).
        assert source.gathering.empty >= 1
        broker.server.close()

    asyncio.run(go())


def test_a_gather_lasts_as_long_as_a_pass_takes_to_arrive() -> None:
    gathering = Gathering(0.25)
    assert gathering.due(0.0) and gathering.seconds == GATHER_FIRST_S
    for _ in range(30):     # 40,000 messages/s: about 13 ms brings GATHER_FOR
        gathering.brought(round(40_000 * gathering.seconds), 0.0)
    assert 0.9 < gathering.seconds * 40_000 / GATHER_FOR < 1.1
    for _ in range(30):     # 1,500 messages/s: GATHER_FOR would take 340 ms, over the longest
        gathering.brought(max(1, round(1_500 * gathering.seconds)), 0.0)
    assert gathering.seconds == 0.25
    for _ in range(30):     # a flood: the shortest
        gathering.brought(100_000, 0.0)
    assert gathering.seconds == GATHER_MIN_S
    gathering.brought(1, 0.0)   # 2,000 messages/s: 500 in the longest, worth gathering
    assert gathering.seconds > GATHER_MIN_S
    for _ in range(30):     # 10 messages/s: the longest would bring 2.5, not worth its wait
        gathering.brought(max(1, round(10 * gathering.seconds)), 0.0)
    assert gathering.seconds == GATHER_FIRST_S
    # Nothing brought: off for 1 s, then 2, 4 ... in a row; something brought resets that.
    gathering.brought(0, 10.0)
    assert not gathering.due(10.9) and gathering.due(11.0)
    gathering.brought(0, 11.0)
    assert not gathering.due(12.9) and gathering.due(13.0)
    gathering.brought(5, 13.0)
    gathering.brought(0, 13.0)
    assert gathering.due(14.0) and gathering.empty == 3
    assert not Gathering(0.0).due(0.0), "gather_ms 0: off"


@pytest.mark.parametrize("gather_ms", [0.0, 20.0])
def test_a_trickle_is_gathered_into_fewer_passes(gather_ms: float) -> None:
    """A live stream of one message every 2 ms: taken as it comes without gathering, about
    ten at a time with 20 ms of it; nothing lost either way."""
    async def go() -> None:
        broker = Broker(count=150, pace_s=0.002)
        port = await broker.start()
        source = MqttSource(settings(port, gather_ms=gather_ms), ["sc/#"], batch_hint=5000)
        passes = 0
        real_run = source.run

        async def counting(handle: Callable[[Sequence[tuple[Inbound, Ticket]]],
                                            Awaitable[None]]) -> None:
            async def counted(batch: Sequence[tuple[Inbound, Ticket]]) -> None:
                nonlocal passes
                passes += 1
                await handle(batch)
            await real_run(counted)

        source.run = counting  # type: ignore[method-assign]
        got = await consume(source, lambda: len(broker.acked) == 150, timeout=20)
        assert sorted(m.packet_id for m in got) == list(range(1, 151))
        if gather_ms:
            assert passes <= 150 / 4, passes
        else:
            assert passes >= 150 / 2, passes
        broker.server.close()

    asyncio.run(go())


def test_a_broker_breaking_the_protocol_is_reconnected_and_nothing_is_lost() -> None:
    async def go() -> None:
        broker = Broker(count=300, garbage_after=120)
        port = await broker.start()
        source = MqttSource(settings(port), ["sc/#"])
        got = await consume(source, lambda: len(broker.acked) == 300, timeout=20)
        assert broker.connections >= 2
        assert {m.packet_id for m in got} == set(range(1, 301))
        assert all(m.redelivered for m in got if got.index(m) >= 120)
        broker.server.close()

    asyncio.run(go())


def test_a_backlog_ahead_of_the_suback_is_taken_with_backpressure() -> None:
    """A persistent session's backlog follows the CONNACK, and the SUBACK only follows the
    backlog: the source takes messages meanwhile and stops reading at its high-water mark,
    instead of reading the whole backlog into memory first."""
    async def go() -> None:
        broker = Broker(count=3_000, window=100_000, backlog_first=True, payload=b"x" * 2000)
        port = await broker.start()
        source = MqttSource(settings(port, max_pending_messages=100), ["sc/#"])
        waiting: list[int] = []

        async def watch() -> None:
            while True:
                conn = source._conn
                waiting.append(len(conn.inbox) if conn is not None else 0)
                await asyncio.sleep(0)

        watching = asyncio.create_task(watch())
        got = await consume(source, lambda: len(broker.acked) == 3_000, timeout=20)
        watching.cancel()
        assert len(got) == 3_000 and broker.connections == 1
        # One socket read (at most 256 KiB: about 130 of these) past the mark, not 3,000.
        assert max(waiting) <= 100 + 140, max(waiting)

    asyncio.run(go())


def test_alerts_are_resent_with_dup_until_the_broker_acknowledges_them() -> None:
    async def go() -> None:
        broker = Broker(count=2_000, garbage_after=1_500, ack_ours_from=2)
        port = await broker.start()
        source = MqttSource(settings(port), ["sc/#"])

        async def alert_early() -> None:
            while source._conn is None or not source._conn.subscribed:
                await asyncio.sleep(0.001)
            source.publish("sc/c/alert/door/d", b'{"rule": "door_forced"}')

        await consume(source, lambda: len(broker.acked) == 2_000 and len(source.outbox) == 0,
                      timeout=20, also=alert_early)
        payloads = [(p, dup) for p, _pid, dup in broker.theirs]
        assert payloads[0] == (b'{"rule": "door_forced"}', False)
        assert (b'{"rule": "door_forced"}', True) in payloads[1:], "sent again with DUP"
        assert len({pid for _p, pid, _d in broker.theirs}) == 1, "under the same packet id"
        broker.server.close()

    asyncio.run(go())


def test_keepalive_pings_while_acknowledgements_are_held() -> None:
    async def go() -> None:
        broker = Broker(count=0)
        port = await broker.start()
        source = MqttSource(settings(port, keepalive_s=5), ["sc/#"])
        await consume(source, lambda: broker.pings >= 1, timeout=10)
        broker.server.close()

    asyncio.run(go())


def test_a_broker_silent_past_the_keepalive_is_taken_for_gone_and_reconnected() -> None:
    """Pings unanswered for 1.5 keepalives (5 s here, the least allowed): a new connection."""
    async def go() -> None:
        broker = Broker(count=0, answer_pings=False)
        port = await broker.start()
        source = MqttSource(settings(port, keepalive_s=5), ["sc/#"])
        await consume(source, lambda: broker.connections >= 2, timeout=20)
        assert broker.pings >= 2
        broker.server.close()

    asyncio.run(go())


def test_a_fleet_publishing_in_bursts_is_not_taken_for_a_window(
        caplog: pytest.LogCaptureFixture) -> None:
    """Bursts of 200 stall with the same count, but resume at the fleet's pace, not at our
    acknowledgements: no window, no warning. A broker that resumes at once is one."""
    from collector.source import Window

    bursts = Window(batch_hint=5000)
    with caplog.at_level(logging.WARNING, logger="collector.source"):
        for _ in range(20):
            bursts.stalled(200)
            bursts.resumed(0.040)
        for _ in range(20):
            bursts.stalled(200)
            bursts.resumed(None)          # resumed before our acknowledgements went out
    assert bursts.size == 0 and bursts.peak == 200 and caplog.text == ""
    window = Window(batch_hint=5000)
    for _ in range(5):
        window.stalled(20)
        window.resumed(0.0004)
    assert window.size == 20 and window.warned


def test_alerts_published_together_leave_in_one_write_and_close_sends_them() -> None:
    class Transport:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    async def go() -> None:
        from collector.source import GATHER_S
        conn = _Connection(100)
        transport = Transport()
        conn._transport = transport  # type: ignore[assignment]
        outbox = Outbox()
        for n in range(3):
            outbox.publish("sc/c/alert/door/d", b"%d" % n, conn.write_soon)
        assert transport.writes == []
        await asyncio.sleep(GATHER_S * 4)
        assert len(transport.writes) == 1 and transport.writes[0].count(b"sc/c/alert") == 3
        outbox.publish("sc/c/alert/door/d", b"last", conn.write_soon)
        conn.close()              # what waited goes out before the DISCONNECT
        assert transport.writes[1].endswith(b"last") and transport.writes[2] == \
            wire.DISCONNECT_PACKET

    asyncio.run(go())
