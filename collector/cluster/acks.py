"""Acknowledging deliveries of one partition channel: in order, once nothing holds them.

As the MQTT source's tickets: a delivery's :class:`AmqpTicket` is held by everything the
message produced (each batch its readings are in, the handler) and released once that is
durable. The settled run at the head of the channel's deliveries is acknowledged with one
``basic.ack`` (``multiple``) in the next turn of the event loop; a delivery still held keeps
the ones after it waiting, so what is acknowledged is always a prefix of what was delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from collector.cluster.broker import FAILURES
from collector.source import Ticket

log = logging.getLogger(__name__)

_RUNNING: set[asyncio.Future[None]] = set()


def background(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` without waiting for it (an acknowledgement, an alert), holding a
    reference until it is done."""
    task = asyncio.ensure_future(work)
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


class AmqpTicket(Ticket):
    """The MQTT source's ticket, with ``mid`` the delivery tag, carrying the ids of the
    replicated stamps its readings got (named once it is acknowledged)."""

    __slots__ = ("stamps",)

    def __init__(self, acks: Acks, tag: int) -> None:
        super().__init__(acks, tag)
        self.stamps: list[str] = []


class Channel(Protocol):
    """What acknowledges on a channel (``consumer.ChannelAcks``)."""

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None: ...


class Acks:
    """One partition channel's deliveries, acknowledged in order."""

    def __init__(self, channel: Channel, on_acked: Callable[[list[str]], None]) -> None:
        # on_acked: names the stamps of acknowledged messages (this partition's).
        # The channel's basic_ack writes the frame before its first await, so
        # acknowledgements leave in the order they were made (a smaller "up to" after a
        # larger one would be an unknown delivery tag, and close the channel).
        self._channel = channel
        self._on_acked = on_acked
        self._tickets: deque[AmqpTicket] = deque()
        self._upto = 0
        self._stamps: list[str] = []
        self._open = True

    def __len__(self) -> int:
        return len(self._tickets)

    def track(self, tag: int) -> AmqpTicket:
        ticket = AmqpTicket(self, tag)
        self._tickets.append(ticket)
        return ticket

    def send_settled(self) -> None:
        tickets = self._tickets
        if not self._upto and tickets and tickets[0].settled:
            asyncio.get_running_loop().call_soon(self._flush)
        while tickets and tickets[0].settled:
            ticket = tickets.popleft()
            self._upto = ticket.mid
            self._stamps += ticket.stamps

    def _flush(self) -> None:
        upto, self._upto = self._upto, 0
        stamps, self._stamps = self._stamps, []
        if self._open and upto:
            background(self._ack(upto, stamps))

    async def _ack(self, upto: int, stamps: list[str]) -> None:
        try:
            await self._channel.basic_ack(upto, multiple=True)
        except FAILURES as exc:
            # The channel is gone: the broker delivers these messages again.
            log.debug("acknowledgement up to %d not sent (%s)", upto, exc)
            return
        if stamps:
            self._on_acked(stamps)

    def close(self) -> None:
        # Delivery tags belong to their channel: after it, the broker redelivers instead.
        self._open = False
        self._tickets.clear()


