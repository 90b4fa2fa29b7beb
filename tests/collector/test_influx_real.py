"""The writer against the real InfluxDB 1.x: what the scripted server cannot vouch for."""

from __future__ import annotations

import asyncio

import pytest

from collector.errors import AuthWriteError
from collector.settings import InfluxSettings
from collector.sink.influx import InfluxWriter
from simulators import servers

pytestmark = pytest.mark.integration


def test_a_dropped_database_is_created_again(influxdb: servers.Server) -> None:
    """An operator drops the database under a running writer: the write after is refused
    (404, kept by the caller as a fault), and the one after that creates it and lands."""
    url = f"http://127.0.0.1:{influxdb.port}"
    settings = InfluxSettings(url=url, database="dropped", timeout_s=5.0)

    async def go() -> None:
        async with InfluxWriter(settings) as writer:
            await writer.write(b"m v=1 1700000000000")
            await asyncio.to_thread(servers.influx_statement, url, 'DROP DATABASE "dropped"')
            with pytest.raises(AuthWriteError, match="404"):
                await writer.write(b"m v=2 1700000001000")
            await writer.write(b"m v=3 1700000002000")

    asyncio.run(go())
    (series,) = servers.influx_query(url, "dropped", "SELECT v FROM m")
    assert [row[1] for row in series["values"]] == [3.0]
