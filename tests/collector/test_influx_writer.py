"""The writer's request shapes and error classification, with a fake HTTP transport.

(No InfluxDB 2 binary exists on Debian: the v2 request shape is checked here only.)
"""

from __future__ import annotations

import asyncio

import httpx
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


def write(settings: InfluxSettings, respond: httpx.Response | Exception,
          seen: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/query":
            return httpx.Response(200, json={"results": [{"statement_id": 0}]})
        if isinstance(respond, Exception):
            raise respond
        return respond

    async def go() -> None:
        async with InfluxWriter(settings, transport=httpx.MockTransport(handler)) as writer:
            await writer.write(BODY)

    asyncio.run(go())


def test_v1_shape_creates_the_database_once_then_writes() -> None:
    seen: list[httpx.Request] = []
    settings = InfluxSettings(url="http://influx:8086", database="smart_community",
                              username="writer", password="pw")  # type: ignore[arg-type]
    write(settings, httpx.Response(204), seen)
    create, post = seen
    assert create.url.path == "/query"
    assert b"CREATE+DATABASE+%22smart_community%22" in create.content
    assert post.method == "POST" and post.url.path == "/write"
    assert dict(post.url.params) == {"db": "smart_community", "precision": "ms", "u": "writer",
                                     "p": "pw"}
    assert post.content == BODY
    assert post.headers["content-type"] == "text/plain; charset=utf-8"


def test_v2_shape() -> None:
    seen: list[httpx.Request] = []
    settings = InfluxSettings(url="http://influx:8086", api="v2", org="hebei",
                              bucket="smart_community", token="t0k")  # type: ignore[arg-type]
    write(settings, httpx.Response(204), seen)
    (post,) = seen  # v2 never sends CREATE DATABASE
    assert post.url.path == "/api/v2/write"
    assert dict(post.url.params) == {"org": "hebei", "bucket": "smart_community",
                                     "precision": "ms"}
    assert post.headers["authorization"] == "Token t0k"
    assert post.content == BODY


def test_v2_without_a_token_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused when the settings are read, before anything connects."""
    from collector import settings
    for key, value in {"API": "v2", "ORG": "o", "BUCKET": "b"}.items():
        monkeypatch.setenv(f"SCT_INFLUX__{key}", value)
    with pytest.raises(ConfigError, match=r"influx\.token"):
        settings.load()


V1 = InfluxSettings(create_database=False)


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(500, json={"error": "engine down"}), RetryableWriteError),
    (httpx.Response(503, text="unavailable"), RetryableWriteError),
    (httpx.Response(429, headers={"Retry-After": "7"}), RetryableWriteError),
    (httpx.Response(413, json={"error": "request entity too large"}), BatchTooLargeError),
    (httpx.Response(400, json={"error": "partial write: field type conflict"}), BadLinesError),
    (httpx.Response(422, json={"message": "unprocessable"}), BadLinesError),
    (httpx.Response(401, json={"error": "authorization failed"}), AuthWriteError),
    (httpx.Response(403, json={"error": "forbidden"}), AuthWriteError),
    (httpx.ConnectError("refused"), RetryableWriteError),
    (httpx.ReadTimeout("slow"), RetryableWriteError),
])
def test_each_failure_names_its_action(response: httpx.Response | Exception,
                                       error: type[Exception]) -> None:
    with pytest.raises(error):
        write(V1, response, [])


def test_retry_after_and_server_text_are_kept() -> None:
    with pytest.raises(RetryableWriteError) as info:
        write(V1, httpx.Response(429, headers={"Retry-After": "7"}), [])
    assert info.value.retry_after == 7.0
    with pytest.raises(RetryableWriteError) as info:
        write(V1, httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
              [])
    assert info.value.retry_after == 0.0, "a date in the past means now"
    with pytest.raises(BadLinesError, match=r"^partial write: field type conflict$"):
        write(V1, httpx.Response(400, json={"error": "partial write: field type conflict"}), [])


def test_success() -> None:
    """A 204 is a write: one request to /write, no error, nothing retried."""
    seen: list[httpx.Request] = []
    write(V1, httpx.Response(204), seen)
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/write")], "no CREATE: off"
