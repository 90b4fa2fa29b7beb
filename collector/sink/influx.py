"""The InfluxDB writer: POSTs line-protocol bytes, and says what went wrong. Nothing more.

The only user of the HTTP client (``collector/sink/http.py``). Batching, retries and
splitting live in ``batcher.py`` and ``retry.py``; here every failure becomes one
:class:`WriteError` subclass that names the action it needs (see ``collector.errors``).

Two APIs, picked by ``influx.api``:
- v1: ``POST /write?db=&precision=ms`` (InfluxDB 1.x; 2.x and 3.x through their v1
  compatibility layer), optional user and password; ``CREATE DATABASE`` when missing.
- v2: ``POST /api/v2/write?org=&bucket=&precision=ms`` with ``Authorization: Token``.
"""

from __future__ import annotations

import email.utils
import time
from types import TracebackType
from typing import Any

from collector.errors import (
    AuthWriteError,
    BadLinesError,
    BatchTooLargeError,
    ConfigError,
    RetryableWriteError,
    WriteError,
)
from collector.settings import InfluxSettings
from collector.sink.http import Client, Response, TransportError
from devices.schema import PRECISION


class InfluxWriter:
    """Writes line protocol to one InfluxDB. Use as ``async with InfluxWriter(s) as w``."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._client: Client | None = None
        #: Whether this writer creates its database (v1): before the first write, and again
        #: after a write answered 404.
        self._creates = settings.api == "v1" and settings.create_database
        self._database_ready = not self._creates

    async def __aenter__(self) -> InfluxWriter:
        self._client = Client(self._settings.url, self._settings.timeout_s)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def write(self, body: bytes) -> None:
        """Write one batch of lines.

        Raises:
            WriteError: a subclass naming what to do about it.
        """
        if not self._database_ready:
            await self._create_database()
        path, params, headers = self._request_shape()
        response = await self._post(path, params=params, headers=headers, content=body)
        error = classify(response)
        if error is not None:
            if response.status_code == 404 and self._creates:
                # The database is gone (dropped by hand): the slow retry of this batch
                # creates it again.
                self._database_ready = False
            raise error

    def _request_shape(self) -> tuple[str, dict[str, str], dict[str, str]]:
        s = self._settings
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if s.api == "v2":
            if not (s.org and s.bucket and s.token):
                raise ConfigError("influx.api = v2 needs influx.org, influx.bucket and "
                                  "influx.token")
            headers["Authorization"] = f"Token {s.token.get_secret_value()}"
            return "/api/v2/write", {"org": s.org, "bucket": s.bucket,
                                     "precision": PRECISION}, headers
        params = {"db": s.database, "precision": PRECISION}
        if s.username:
            params["u"] = s.username
            params["p"] = s.password.get_secret_value() if s.password else ""
        return "/write", params, headers

    async def query(self, influxql: str) -> list[list[dict[str, Any]]]:
        """Run InfluxQL (v1 ``/query``, also served by 2.x's compatibility layer): the
        ``series`` of every statement, in order, each a list (empty when nothing matched).

        Raises:
            WriteError: the server is unreachable or refused the query.
        """
        s = self._settings
        params = {"db": s.database, "q": influxql, "epoch": "ms"}
        if s.username:
            params["u"] = s.username
            params["p"] = s.password.get_secret_value() if s.password else ""
        headers = {"Authorization": f"Token {s.token.get_secret_value()}"} \
            if s.api == "v2" and s.token else {}
        response = await self._post("/query", data=params, headers=headers)
        error = classify(response)
        if error is not None:
            raise error
        results = response.json().get("results", [])
        out = []
        for result in results:
            if "error" in result:
                raise BadLinesError(f"InfluxDB refused the query: {result['error']}", 400)
            out.append(result.get("series", []))
        return out

    async def _create_database(self) -> None:
        s = self._settings
        params = {"q": f'CREATE DATABASE "{s.database}"'}
        if s.username:
            params["u"] = s.username
            params["p"] = s.password.get_secret_value() if s.password else ""
        response = await self._post("/query", data=params)
        error = classify(response)
        if error is not None:
            raise error
        self._database_ready = True

    async def _post(self, path: str, *, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None, content: bytes = b"",
                    data: dict[str, str] | None = None) -> Response:
        assert self._client is not None, "use InfluxWriter as an async context manager"
        try:
            return await self._client.post(path, params=params, headers=headers,
                                           content=content, data=data)
        except TransportError as exc:
            raise RetryableWriteError(f"cannot reach InfluxDB at {self._settings.url}: "
                                      f"{type(exc).__name__}: {exc}") from exc


def classify(response: Response) -> WriteError | None:
    """The error a write response stands for, or None when it succeeded."""
    status = response.status_code
    if status < 300:
        return None
    text = _server_text(response)
    message = f"InfluxDB answered {status}: {text}"
    if status == 429 or status >= 500:
        return RetryableWriteError(message, status, retry_after(response))
    if status == 413:
        return BatchTooLargeError(message, status)
    if status in (400, 422):
        return BadLinesError(text, status)
    if status in (401, 403):
        return AuthWriteError(message, status)
    if status == 404:
        # A missing database or bucket: a configuration fault, or a v1 database dropped
        # under a running writer (which creates it again before the next write).
        return AuthWriteError(message, status)
    return RetryableWriteError(message, status)


def retry_after(response: Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.header("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_text(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:1000]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:1000]
    return str(body)[:1000]
