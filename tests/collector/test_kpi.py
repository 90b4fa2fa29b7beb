"""Green-community KPIs from known points in the real InfluxDB."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from collector import kpi
from collector.settings import InfluxSettings, KpiSettings
from collector.sink.influx import InfluxWriter
from devices.registry import from_mapping
from simulators import servers

pytestmark = pytest.mark.integration

REGISTRY = {
    "communities": [{"id": "c1", "city": "xinji", "district": "xinji", "households": 100}],
    "devices": [
        {"id": "lamp-1", "kind": "streetlight", "community": "c1"},
        {"id": "lamp-2", "kind": "streetlight", "community": "c1"},
        {"id": "bin-1", "kind": "waste_bin", "community": "c1", "attrs": {"category": "other"}},
        {"id": "bin-2", "kind": "waste_bin", "community": "c1", "attrs": {"category": "kitchen"}},
        {"id": "q-1", "kind": "water_quality", "community": "c1"},
        {"id": "in-1", "kind": "water_meter", "community": "c1", "attrs": {"role": "inlet"}},
    ],
}


def known_points(now_ms: int) -> bytes:
    tags = "city=xinji,community=c1,district=xinji"
    lines = [f"streetlight,{tags},device=lamp-1 dim_pct=50.0 {now_ms - 60_000}",
             f"streetlight,{tags},device=lamp-1 dim_pct=70.0 {now_ms - 120_000}"]
    for i in range(10):
        fill = 95.0 if i == 0 else 40.0
        lines.append(f"waste_bin,{tags},category=other,device=bin-{1 + i % 2} "
                     f"fill_pct={fill} {now_ms - i * 60_000}")
    for i, (t, c, ph) in enumerate([(0.3, 0.3, 7.2), (0.2, 0.3, 7.3), (0.3, 0.3, 7.1),
                                    (2.0, 0.3, 7.2)]):
        lines.append(f"water_quality,{tags},device=q-1 turbidity_ntu={t},chlorine_mg_l={c},"
                     f"ph={ph} {now_ms - i * 60_000}")
    for minutes, flow in ((10, 2.0), (20, 6.0)):  # today's min 2, mean 4 -> 0.5
        lines.append(f"water_meter,{tags},device=in-1,role=inlet flow_m3h={flow} "
                     f"{now_ms - minutes * 60_000}")
    return "\n".join(lines).encode()


def test_indicators_and_the_city_share(influxdb: servers.Server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{influxdb.port}"
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/query", data=b"q=CREATE+DATABASE+kpi", method="POST"), timeout=10).close()
    now = int(time.time() * 1000)
    if now % 86_400_000 < 25 * 60_000:  # keep the meter's two readings in one UTC day
        now -= 30 * 60_000
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/write?db=kpi&precision=ms", data=known_points(now), method="POST"),
        timeout=10).close()
    registry = from_mapping(REGISTRY)

    async def run() -> list[kpi.CommunityKpi]:
        async with InfluxWriter(InfluxSettings(url=url, database="kpi")) as writer:
            return await kpi.compute(registry, writer.query, KpiSettings())

    (k,) = asyncio.run(run())
    assert k.values["lamps_per_100_households"] == 2.0
    assert k.values["lamp_availability"] == 0.5
    assert k.values["energy_saving"] == pytest.approx(0.4)
    assert k.values["bin_overflow_rate"] == pytest.approx(0.1)
    assert k.values["water_quality_compliance"] == pytest.approx(0.75)
    assert k.values["leak_indicator"] == pytest.approx(0.5)
    assert k.values["security_per_100_households"] == 0.0
    assert k.values["device_online_rate"] == pytest.approx(5 / 6)
    failing = sorted(n for n, ok in k.passed.items() if not ok)
    assert failing == ["bin_overflow_rate", "device_online_rate", "lamp_availability",
                       "security_per_100_households", "water_quality_compliance"]
    assert not k.meets and kpi.city_shares([k]) == {"xinji": (0, 1)}
    (point,) = kpi.points([k], now)
    assert dict(point.fields)["meets_target"] is False and dict(point.fields)["meets"] == 0.0

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    run_cli = subprocess.run([sys.executable, "-m", "collector", "kpi"], capture_output=True,
                             text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "SCT_INFLUX__URL": url,
                                  "SCT_INFLUX__DATABASE": "kpi",
                                  "SCT_REGISTRY__PATH": str(path)})
    assert run_cli.returncode == 0, run_cli.stderr
    assert "xinji          0/1 = 0%  behind" in run_cli.stdout
    (series,) = servers.influx_query(url, "kpi", "SELECT meets FROM community_kpi")
    assert series["values"][-1][1] == 0.0
