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

from collector import goal, kpi
from collector.settings import InfluxSettings, KpiSettings
from collector.sink.influx import InfluxWriter
from devices.registry import from_mapping
from simulators import servers

pytestmark = pytest.mark.integration

REGISTRY = {
    "communities": [{"id": "c1", "name": "新华社区", "city": "xinji", "district": "xinji",
                     "households": 100}],
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
    for ts, flow in inlet_flow(now_ms):
        lines.append(f"water_meter,{tags},device=in-1,role=inlet flow_m3h={flow} {ts}")
    return "\n".join(lines).encode()


def inlet_flow(now_ms: int) -> list[tuple[int, float]]:
    """Every 30 min for the last 30 h: 1 m³/h from 02:00 to 05:00 China time, else 3."""
    out = []
    for i in range(60):
        ts = now_ms - i * 1_800_000
        hour = (ts + 8 * 3_600_000) % 86_400_000 / 3_600_000
        out.append((ts, 1.0 if 2 <= hour < 5 else 3.0))
    return out


def test_indicators_and_the_city_share(influxdb: servers.Server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{influxdb.port}"
    servers.influx_create_database(url, "kpi")
    now = int(time.time() * 1000)
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/write?db=kpi&precision=ms", data=known_points(now), method="POST"),
        timeout=10).close()
    registry = from_mapping(REGISTRY)

    async def run(at_ms: int) -> list[kpi.CommunityKpi]:
        async with InfluxWriter(InfluxSettings(url=url, database="kpi")) as writer:
            return await kpi.compute(registry, writer.query, KpiSettings(), at_ms)

    # Two days on, the readings (minutes old now) cover a whole night and more than an hour.
    (k,) = asyncio.run(run(now + 2 * 86_400_000))
    assert k.values["lamps_per_100_households"] == 2.0
    assert k.values["lamp_availability"] == 0.5
    assert k.values["energy_saving"] == pytest.approx(0.4)
    assert k.values["bin_overflow_rate"] == pytest.approx(0.1)
    assert k.values["water_quality_compliance"] == pytest.approx(0.75)
    # The night's minimum over the mean of the window; partial days without a night left out.
    flows = [flow for _, flow in inlet_flow(now)]
    assert k.values["leak_indicator"] == pytest.approx(1.0 / (sum(flows) / len(flows)))
    assert k.values["security_per_100_households"] == 0.0
    assert k.values["device_online_rate"] == pytest.approx(5 / 6)
    failing = sorted(n for n, ok in k.passed.items() if not ok)
    assert failing == ["bin_overflow_rate", "device_online_rate", "lamp_availability",
                       "security_per_100_households", "water_quality_compliance"]
    assert all(k.enough.values()) and not k.assessing and not k.meets
    assert k.verdict("leak_indicator") == "meets" and k.verdict("lamp_availability") == "fails"
    (goal_c1,) = goal.rollup(registry, [k], {}, KpiSettings())
    assert (goal_c1.city, goal_c1.meeting, goal_c1.failing, goal_c1.communities) == \
        ("xinji", 0, 1, 1)
    (point, info) = kpi.points([k], now)
    fields = dict(point.fields)
    assert fields["meets_target"] is False and fields["meets"] == 0.0
    assert fields["assessing"] is False and fields["name"] == "新华社区"
    assert dict(info.tags)["label"] == "新华社区 (c1)"

    # Now, the readings are minutes old: no whole night (lighting's energy saving, the
    # leak indicator) and under an hour (the rest measured from readings): assessing.
    (k,) = asyncio.run(run(now))
    waiting = sorted(n for n, ok in k.enough.items() if not ok)
    assert waiting == ["bin_overflow_rate", "energy_saving", "lamp_availability",
                       "water_quality_compliance"]   # the meter's 30 h make the rest enough
    assert k.assessing and not k.meets and k.verdict("energy_saving") == "not_enough_data"
    (goal_c1,) = goal.rollup(registry, [k], {}, KpiSettings())
    assert (goal_c1.meeting, goal_c1.assessing, goal_c1.failing) == (0, 1, 0)
    # The leak indicator needs 24 h of the inlet's readings (a mean over every hour).
    (k,) = asyncio.run(run(now - 7 * 3_600_000))
    assert not k.enough["leak_indicator"]

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    run_cli = subprocess.run([sys.executable, "-m", "collector", "kpi"], capture_output=True,
                             text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "SCT_INFLUX__URL": url,
                                  "SCT_INFLUX__DATABASE": "kpi",
                                  "SCT_REGISTRY__PATH": str(path)})
    assert run_cli.returncode == 0, run_cli.stderr
    # Chinese by default: the community's and the city's names, the verdict, the milestones.
    assert "新华社区 (c1)" in run_cli.stdout and "辛集" in run_cli.stdout, run_cli.stdout
    assert "评估中" in run_cli.stdout and "*2022 60%" in run_cli.stdout
    city_line = next(line for line in run_cli.stdout.splitlines() if line.startswith("辛集"))
    assert city_line.split()[:6] == ["辛集", "0", "1", "0", "1", "0%"], city_line
    assert "0/2 落后" in city_line   # 2020: at least 2 in Xinji
    (series,) = servers.influx_query(url, "kpi", "SELECT meeting, assessing, communities, "
                                     "ok_2020, minimum_2020, target_2022 FROM city_kpi "
                                     "WHERE city = 'xinji'")
    assert series["values"][-1][1:] == [0, 1, 1, False, 2, 0.6]
    (series,) = servers.influx_query(url, "kpi", "SELECT meets FROM community_kpi")
    assert series["values"][-1][1] == 0.0


def test_the_last_whole_night_ends_at_six_china_time() -> None:
    hour = 3_600_000
    # 2026-12-02 00:00 UTC is 08:00 China time: last night ran 18:00-06:00 China time,
    # which is 10:00-22:00 UTC the day before.
    at = 1_796_169_600_000
    assert kpi.last_night_start(at) == at - 14 * hour
    # 21:00 UTC is 05:00 China time: tonight is not over, the whole one is the night before.
    assert kpi.last_night_start(at + 21 * hour) == at - 14 * hour
    assert kpi.last_night_start(at + 22 * hour) == at + 10 * hour


def test_a_county_level_city_needs_two_and_shares_use_the_configured_denominator() -> None:
    settings = KpiSettings(city_communities={"xinji": 10})
    plan = {m.year: m for m in goal.milestones(settings, "xinji")}
    assert plan[2020].minimum == 2 and plan[2021].share == 0.3 and plan[2022].share == 0.6
    assert goal.milestones(settings, "baoding")[0].minimum == 5
    registry = from_mapping({"communities": [
        {"id": f"x{i}", "city": "xinji", "district": "xinji", "households": 10}
        for i in range(4)] + [{"id": "b1", "city": "baoding", "district": "lianchi",
                               "households": 10}], "devices": []})
    latest = {"x0": ("xinji", True, False), "x1": ("xinji", True, False),
              "x2": ("xinji", False, True), "x3": ("xinji", False, False),
              "b1": ("baoding", True, False), "gone": ("baoding", True, False)}
    xinji, baoding = sorted(goal.rollup(registry, [], latest, settings), key=lambda g: g.city)[::-1]
    assert (xinji.meeting, xinji.assessing, xinji.failing, xinji.communities) == (2, 1, 1, 10)
    assert xinji.met() == {2020: True, 2021: False, 2022: False}   # 2 of 10: 20 %
    assert (baoding.meeting, baoding.communities) == (1, 1)        # the registry's count
    assert baoding.met() == {2020: False, 2021: True, 2022: True}
    total = goal.province([xinji, baoding])
    assert (total.meeting, total.communities) == (3, 11)
    assert [(m.year, m.minimum, m.share) for m in total.plan] == [
        (2020, 7, None), (2021, None, 0.3), (2022, None, 0.6)]
