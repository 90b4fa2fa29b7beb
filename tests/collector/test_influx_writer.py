"""The writer's request shapes and error classification, and its HTTP client, against a
scripted HTTP server on a loopback port (each answer, and each way of breaking off, can be
provoked exactly).

(No InfluxDB 2 binary exists on Debian: the v2 request shape is checked here only.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest

from collector.errors import (
    AuthWriteError,
    BadLinesError,
    BatchTooLargeError,
    ConfigError,
    RetryableWriteError,
)
from collector.settings import InfluxSettings
from collector.sink.influx import InfluxWriter

BODY = b"m,t=1 f=1.0 1700000000000"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]       # names in lower case
    body: bytes


def answer(status: int, body: bytes | dict[str, object] = b"",
           headers: dict[str, str] | None = None) -> bytes:
    """A plain HTTP/1.1 answer with a Content-Length."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


#: What the server does with a request: the bytes to answer, or None to hang up unanswered.
Script = Callable[[Request], bytes | None]


class Server:
    """Answers each request by ``script``; records requests and connections."""

    def __init__(self, script: Script, close_after_each: bool = False) -> None:
        self.script = script
        self.close_after_each = close_after_each
        self.requests: list[Request] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in head[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                url = urlsplit(target)
                request = Request(method, url.path, dict(parse_qsl(url.query)), headers, body)
                self.requests.append(request)
                reply = self.script(request)
                if reply is None:
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after_each:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def created_then(reply: bytes | None) -> Script:
    """``CREATE DATABASE`` succeeds; every write gets ``reply``."""
    return lambda r: answer(200, {"results": [{"statement_id": 0}]}) \
        if r.path == "/query" else reply


def write(settings: InfluxSettings, script: Script, times: int = 1,
          **server: bool) -> Server:
    """Write BODY ``times`` through one writer to a server run by ``script``."""
    srv = Server(script, **server)

    async def go() -> None:
        async with srv as url, InfluxWriter(settings.model_copy(update={"url": url})) as w:
            for _ in range(times):
                await w.write(BODY)

    asyncio.run(go())
    return srv


def test_v1_shape_creates_the_database_once_then_writes() -> None:
    settings = InfluxSettings(database="smart_community", username="writer",
                              password="pw")  # type: ignore[arg-type]
    srv = write(settings, created_then(answer(204)), times=2)
    create, post, again = srv.requests
    assert (create.method, create.path) == ("POST", "/query")
    assert b"CREATE+DATABASE+%22smart_community%22" in create.body
    assert create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (post.method, post.path) == ("POST", "/write") and again.path == "/write"
    assert post.params == {"db": "smart_community", "precision": "ms", "u": "writer",
                           "p": "pw"}
    assert post.body == BODY
    assert post.headers["content-type"] == "text/plain; charset=utf-8"
    assert srv.connections == 1, "one keep-alive connection for all three requests"


def test_v2_shape() -> None:
    settings = InfluxSettings(api="v2", org="hebei", bucket="smart_community",
                              token="t0k")  # type: ignore[arg-type]
    (post,) = write(settings, lambda r: answer(204)).requests  # v2 never creates a database
    assert post.path == "/api/v2/write"
    assert post.params == {"org": "hebei", "bucket": "smart_community", "precision": "ms"}
    assert post.headers["authorization"] == "Token t0k"
    assert post.body == BODY


def test_v2_without_a_token_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused when the settings are read, before anything connects."""
    from collector import settings
    for key, value in {"API": "v2", "ORG": "o", "BUCKET": "b"}.items():
        monkeypatch.setenv(f"SCT_INFLUX__{key}", value)
    with pytest.raises(ConfigError, match=r"influx\.token"):
        settings.load()


V1 = InfluxSettings(create_database=False, timeout_s=0.5)


@pytest.mark.parametrize(("reply", "error"), [
    (answer(500, {"error": "engine down"}), RetryableWriteError),
    (answer(503, b"unavailable"), RetryableWriteError),
    (answer(429, headers={"Retry-After": "7"}), RetryableWriteError),
    (answer(413, {"error": "request entity too large"}), BatchTooLargeError),
    (answer(400, {"error": "partial write: field type conflict"}), BadLinesError),
    (answer(422, {"message": "unprocessable"}), BadLinesError),
    (answer(401, {"error": "authorization failed"}), AuthWriteError),
    (answer(403, {"error": "forbidden"}), AuthWriteError),
    (None, RetryableWriteError),                           # hung up without an answer
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", RetryableWriteError),  # not HTTP
    (answer(204)[:-2], RetryableWriteError),               # never finishes its headers
])
def test_each_failure_names_its_action(reply: bytes | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        write(V1, lambda r: reply)


def test_nobody_listening_is_retryable() -> None:
    async def go() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        settings = V1.model_copy(update={"url": f"http://127.0.0.1:{port}"})
        async with InfluxWriter(settings) as writer:
            with pytest.raises(RetryableWriteError, match="cannot reach InfluxDB"):
                await writer.write(BODY)

    asyncio.run(go())


def test_retry_after_and_server_text_are_kept() -> None:
    with pytest.raises(RetryableWriteError) as info:
        write(V1, lambda r: answer(429, headers={"Retry-After": "7"}))
    assert info.value.retry_after == 7.0
    with pytest.raises(RetryableWriteError) as info:
        write(V1, lambda r: answer(503, headers={"Retry-After":
                                                 "Wed, 21 Oct 2015 07:28:00 GMT"}))
    assert info.value.retry_after == 0.0, "a date in the past means now"
    with pytest.raises(BadLinesError, match=r"^partial write: field type conflict$"):
        write(V1, lambda r: answer(400, {"error": "partial write: field type conflict"}))


def test_success() -> None:
    """A 204 is a write: one request to /write, no error, nothing retried."""
    srv = write(V1, lambda r: answer(204))
    assert [(r.method, r.path) for r in srv.requests] == [("POST", "/write")], "no CREATE"


def test_a_keep_alive_connection_the_server_dropped_is_replaced() -> None:
    """Servers close idle keep-alive connections whenever they like: the next write goes
    out on a new one, once, and succeeds."""
    srv = write(V1, lambda r: answer(204), times=3, close_after_each=True)
    assert len(srv.requests) == 3 and srv.connections == 3


def test_chunked_answers_and_answers_up_to_the_close_are_read_whole() -> None:
    results = {"results": [{"statement_id": 0, "series": [{"name": "m", "values": [[1]]}]}]}
    text = json.dumps(results).encode()
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"".join(b"%x;ext=1\r\n%s\r\n" % (len(text[i:i + 7]), text[i:i + 7])
                        for i in range(0, len(text), 7)) + b"0\r\nX-Trailer: 1\r\n\r\n")
    to_close = b"HTTP/1.0 200 OK\r\n\r\n" + text

    async def go(reply: bytes) -> None:
        # An answer without a length ends at the close, as HTTP/1.0 servers do.
        async with Server(lambda r: reply, close_after_each=reply is to_close) as url, \
                InfluxWriter(V1.model_copy(update={"url": url})) as writer:
            for _ in range(2):          # the chunked one stays open and is used again
                assert await writer.query("SELECT 1") == [[{"name": "m", "values": [[1]]}]]

    asyncio.run(go(chunked))
    asyncio.run(go(to_close))


def test_a_server_that_never_answers_times_out() -> None:
    async def go() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with InfluxWriter(V1.model_copy(update={"url": url})) as writer:
            with pytest.raises(RetryableWriteError, match=r"no answer within 0\.5 s"):
                await writer.write(BODY)
        server.close()

    asyncio.run(go())


def test_a_missing_database_is_created_again_on_the_next_write() -> None:
    """A 404 (the database dropped after it was created) is kept as a fault to shout about,
    and the next write creates the database again instead of failing for ever."""
    writes: list[int] = []

    def script(r: Request) -> bytes | None:
        if r.path == "/query":
            return answer(200, {"results": [{"statement_id": 0}]})
        writes.append(1)
        return answer(404, {"error": 'database not found: "sc"'}) if len(writes) == 1 \
            else answer(204)

    srv = Server(script)

    async def go() -> None:
        settings = InfluxSettings(database="sc", timeout_s=0.5)
        async with srv as url, InfluxWriter(settings.model_copy(update={"url": url})) as w:
            with pytest.raises(AuthWriteError, match="database not found"):
                await w.write(BODY)
            await w.write(BODY)
            await w.write(BODY)

    asyncio.run(go())
    assert [r.path for r in srv.requests] == ["/query", "/write", "/query", "/write", "/write"]
