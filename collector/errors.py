"""The collector's one error hierarchy.

    SctError
    ├── ConfigError            bad configuration, found at start-up
    ├── BrokerError            the MQTT connection failed, was refused or broke the protocol
    ├── Rejected               one reading or message refused (carries a reason code)
    ├── StorageError           a file in storage.dir cannot be written (disk full, read-only)
    └── WriteError             InfluxDB did not take a batch; subclasses say what to do:
        ├── RetryableWriteError    network error, 5xx, 429: try the same batch again later
        ├── BatchTooLargeError     413: split the batch and write the halves
        ├── BadLinesError          400 / 422: some lines are bad; find them, set them aside
        └── AuthWriteError         401 / 403: keep everything, shout, retry slowly

Foreign errors (OSError, ssl, the HTTP client's) are wrapped with ``raise ... from exc`` at the
module that talks to the foreign library.
"""

from __future__ import annotations


class SctError(Exception):
    """Raised by sct for any failure it understands; never raised directly."""


class ConfigError(SctError):
    """Raised when the configuration is invalid; the message names the key."""


class BrokerError(SctError):
    """Raised when the broker cannot be reached, refuses the connection or a subscription,
    goes silent past the keepalive, or sends something that is not MQTT 3.1.1."""


class Rejected(SctError):
    """Raised when a message or one reading in it is refused.

    Attributes:
        reason: a short stable code (``bad_json``, ``invalid``, ``unknown_device``, ...)
            used for counting and for ``sct deadletter list --reason``.
        detail: the human explanation, naming the field where there is one.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StorageError(SctError):
    """Raised when the spool or the dead letters cannot be written (the disk is full or
    read-only). Not a crash: the collector stops acknowledging and retries."""


class WriteError(SctError):
    """Raised when InfluxDB did not accept a batch."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableWriteError(WriteError):
    """Raised on network errors, 5xx and 429; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class BatchTooLargeError(WriteError):
    """Raised on 413: the server wants smaller requests."""


class BadLinesError(WriteError):
    """Raised on 400 / 422: the server refused some lines; the message is its own text."""


class AuthWriteError(WriteError):
    """Raised on 401 / 403: the credentials are wrong or lack the right to write."""
