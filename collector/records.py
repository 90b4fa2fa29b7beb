"""What travels between stages: a message as received, and a refusal with its reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


# Not frozen, though nothing changes one once built (``dataclasses.replace`` makes a new
# one): a frozen dataclass sets each field through object.__setattr__, 4x the cost of
# building it (0.69 against 0.15 µs), and one is built per message (so are
# ``Decoded`` per reading and ``Processed`` per message, which are not frozen either).
@dataclass(slots=True)
class Inbound:
    """One MQTT message as the source received it, before anything was checked.

    ``redelivered`` is MQTT's DUP flag: the broker sent this message before and has not
    had its acknowledgement. ``packet_id`` is the broker's id for it on this session (0 at
    QoS 0); a redelivery carries the same id (MQTT 3.1.1, 4.4), which is what lets a
    redelivered message without ``ts`` get its first stamp back.
    """

    topic: str
    payload: bytes
    received_ms: int
    redelivered: bool = False
    packet_id: int = 0


class Claim(Protocol):
    """A message's acknowledgement, held by everything it produced until that is durable.

    The source acknowledges a message to the broker once every hold is released.
    """

    def hold(self) -> None: ...

    def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Reject:
    """A message, or one object of an array, that was refused.

    ``payload`` is exactly what should be replayed: the whole message, or the one object.
    """

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_ms: int


#: Takes messages with their claims, in order.
BatchHandler = Callable[[Sequence[tuple[Inbound, Claim]]], Awaitable[None]]


class Source(Protocol):
    """Where messages come from (``source.kind``): the MQTT source or the cluster's AMQP one.

    ``run`` hands every message to ``handle`` with its claim, in order, in batches of what
    has arrived (a batch is processed stage by stage: ``Pipeline.process_many``), until
    ``stop_taking`` then ``close``; ``publish`` sends an alert back to operators' MQTT
    clients."""

    @property
    def unacknowledged(self) -> int: ...

    async def run(self, handle: BatchHandler) -> None: ...

    def publish(self, topic: str, payload: bytes) -> None: ...

    def stop_taking(self) -> None: ...

    def close(self) -> None: ...

    def metrics(self) -> dict[str, int]:
        """Figures for the self-metrics point, by field name."""
        ...
