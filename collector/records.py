"""What travels between stages: a message as received, and a refusal with its reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Inbound:
    """One MQTT message as the source received it, before anything was checked."""

    topic: str
    payload: bytes
    received_ms: int


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
