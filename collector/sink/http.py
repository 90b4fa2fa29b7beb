"""The HTTP client of the InfluxDB writer: HTTP/1.1 POSTs on keep-alive connections.

Only what talking to InfluxDB needs: POST with a body (line protocol, or a form for
``/query``), the answer's status, headers and body (by ``Content-Length``, chunked, or up to
the close), ``http`` and ``https``, one timeout over the whole request. Why not httpx: a
request cost about 1 ms of the collector's CPU through its layers (redirects, auth, anyio, a
module import that fails on every request), against about 60 µs here; at a live fleet's ten
writes a second that was a tenth of the collector's CPU (README, Performance).

A connection that breaks before any answer arrived is replaced and the request sent once
more: a server may close an idle keep-alive connection at any time, and both requests the
writer makes (writing points, creating the database) change nothing when repeated.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

#: What may sit in one header line or a chunk-size line (the stream's read limit).
LINE_LIMIT = 64 * 1024


class TransportError(Exception):
    """The server could not be reached, timed out, or broke off or garbled its answer."""


@dataclass(slots=True)
class Response:
    status_code: int
    headers: dict[str, str]     # names in lower case
    content: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON. Raises ValueError when it is not."""
        return orjson.loads(self.content)


class _Closed(Exception):
    """The connection ended before the answer began (a stale keep-alive connection)."""


_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Client:
    """POSTs to one server (``base_url``); connections are kept and reused."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self._authority = url.netloc.rsplit("@", 1)[-1]
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout_s
        self._idle: list[_Stream] = []

    async def post(self, path: str, *, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, content: bytes = b"",
                   data: dict[str, str] | None = None) -> Response:
        """POST ``content`` (or ``data`` as a form) to ``path``; the server's answer.

        Raises:
            TransportError: no answer (unreachable, timed out, broken off, not HTTP).
        """
        extra = dict(headers or {})
        if data is not None:
            content = urlencode(data).encode()
            extra["Content-Type"] = "application/x-www-form-urlencoded"
        target = self._prefix + path + ("?" + urlencode(params) if params else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {self._authority}",
                 f"Content-Length: {len(content)}", "Accept: */*"]
        for name, value in extra.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"a line break in HTTP header {name!r}")
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(self._timeout):
                return await self._exchange(head, content)
        except TimeoutError as exc:
            raise TransportError(f"no answer within {self._timeout:g} s") from exc

    async def _exchange(self, head: bytes, content: bytes) -> Response:
        while self._idle:
            stream = self._idle.pop()
            try:
                return await self._on(stream, head, content)
            except _Closed:
                continue              # a stale keep-alive connection: try the next one
        try:
            return await self._on(await self._connect(), head, content)
        except _Closed as exc:
            raise TransportError("the server closed the connection without answering") \
                from exc

    async def _connect(self) -> _Stream:
        try:
            return await asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                                 limit=LINE_LIMIT)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect: {type(exc).__name__}: {exc}") from exc

    async def _on(self, stream: _Stream, head: bytes, content: bytes) -> Response:
        reader, writer = stream
        keep = False
        try:
            try:
                writer.write(head)
                if content:
                    writer.write(content)
                await writer.drain()
                status_head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise TransportError("the answer broke off in its headers") from exc
                raise _Closed() from exc
            response, keep = await _read_answer(reader, status_head)
            return response
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if keep:
                self._idle.append(stream)
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()


async def _read_answer(reader: asyncio.StreamReader, status_head: bytes
                       ) -> tuple[Response, bool]:
    """The response whose status line and headers are ``status_head``, and whether the
    connection may be used again. Raises ValueError when it is not HTTP."""
    lines = status_head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(rest.split(" ", 1)[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"a header line without a colon: {line[:80]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers \
                else value.strip()
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body, keep = await reader.read(), False    # the body runs to the close
    return Response(status, headers, body), keep


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":   # trailers, then the end
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
