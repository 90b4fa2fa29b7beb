"""Dashboards: every panel's query, macros and variables filled in, returns data from the real
InfluxDB after two simulated days with faults; the committed JSON is current; uids unique;
every panel and target uses the provisioned datasource."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from conftest import Stack, start_stack, wait_for

from dashboards import DATASOURCE_UID
from dashboards.build import GENERATED, stale
from dashboards.report import KEY_CHARTS
from dashboards.reportpage import NO_DATA
from devices import labels
from simulators import servers

#: The English boards (file name -> JSON); the Chinese ones have the same queries.
BOARDS = {p.name: json.loads(p.read_text()) for p in sorted((GENERATED / "en").glob("*.json"))}
BOARDS_ZH = {p.name: json.loads(p.read_text())
             for p in sorted((GENERATED / "zh").glob("*.json"))}
FILL = {"$timeFilter": "time > now() - 3d", "$__interval": "30m", "$city": ".*",
        "$community": ".*", "$device": ".*"}


def fill(query: str) -> str:
    # The test's collector lives for seconds, not hours: its own metrics need fine buckets.
    if "FROM collector" in query:
        query = query.replace("$__interval", "1s")
    for macro, value in FILL.items():
        query = query.replace(macro, value)
    assert "$" not in query.replace("$/", "/"), query
    return query


def panels() -> Iterator[tuple[str, str, str]]:
    for name, board in BOARDS.items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield name, panel["title"], target["query"]


def test_the_committed_json_is_current_and_well_formed() -> None:
    assert len(BOARDS) == 8 and set(BOARDS_ZH) == set(BOARDS) and stale() == []
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(set(uids)) == len(uids)
    for board in [*BOARDS.values(), *BOARDS_ZH.values()]:
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID
        for variable in board.get("templating", {}).get("list", []):
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == DATASOURCE_UID


def _queries(boards: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(name, [t["query"] for p in b["panels"] for t in p["targets"]])
            for name, b in sorted(boards.items())]


def test_the_chinese_boards_ask_the_same_and_show_chinese() -> None:
    assert _queries(BOARDS_ZH) == _queries(BOARDS)
    han = re.compile(r"[\u4e00-\u9fff]")
    for name, board in BOARDS_ZH.items():
        assert han.search(board["title"]), name
        for panel in board["panels"]:
            assert han.search(panel["title"]), (name, panel["title"])
        for variable in board.get("templating", {}).get("list", []):
            assert han.search(variable["label"]), (name, variable["name"])
    goal = BOARDS_ZH["green-goal.json"]
    city = next(v for v in goal["templating"]["list"] if v["name"] == "city")
    # The city variable shows each city's name and filters on its id.
    assert city["type"] == "custom" and "石家庄 : shijiazhuang" in city["query"]
    assert "辛集 : xinji" in city["query"]
    table = next(p for p in goal["panels"] if p["title"].startswith("各社区指标"))
    names = {o["matcher"]["options"]: o["properties"][0]["value"]
             for o in table["fieldConfig"]["overrides"]
             if o["properties"][0]["id"] == "displayName"}
    # Each indicator column under its area of the plan.
    assert names["leak_indicator"] == "基础设施绿色化 · 供水：夜间最小流量比（漏损）"
    assert names["device_online_rate"].startswith("智慧社区 · ")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, mosquitto: servers.Server,
            influxdb: servers.Server) -> Iterator[Stack]:
    # A stall threshold of a millisecond: the heavy backfill raises (and clears) the
    # collector's own write_stalled alert, so its panel has something to show.
    stack = start_stack(tmp_path_factory.mktemp("dash"), mosquitto, influxdb, "dashboards",
                        communities=4, client_id="sct-dashboards",
                        SCT_METRICS__STALL_ALERT_S="0.001")
    run = stack.sct("simulate", "--registry", str(stack.registry), "--since", "2d",
                    "--history-period", "900", "--duration", "3", "--rate", "200",
                    "--faults", "all", timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # After the run every device said "offline"; two come back, and one message is refused.
    registry = yaml.safe_load(stack.registry.read_text())
    back = [d for d in registry["devices"][:2]]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    for d in back:
        client.publish(f"sc/{d['community']}/{d['kind']}/{d['id']}/status", b"online", qos=1,
                       retain=True).wait_for_publish(10)
    client.publish(f"sc/{back[0]['community']}/{back[0]['kind']}/{back[0]['id']}/telemetry",
                   b"{broken", qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    wait_for(lambda: stack.query("SELECT count(state) FROM alert"), 60, "alerts")
    wait_for(lambda: stack.latest_metrics().get("rejected_bad_json"), 60, "the refusal counted")
    time_ok = wait_for(lambda: stack.latest_metrics().get("pending") == 0, 60, "all written")
    assert time_ok
    # The communities' names are written when the collector starts, before any KPI run:
    # the dashboards' community variable has them from the first minute.
    names = stack.query('SELECT count("name") FROM community_info')
    assert names and names[0]["values"][0][1] == len(registry["communities"])
    kpi = stack.sct("kpi")
    assert kpi.returncode == 0, kpi.stderr
    yield stack
    stack.collector.terminate()
    stack.collector.wait(30)


@pytest.mark.integration
@pytest.mark.parametrize(("board", "title", "query"), list(panels()),
                         ids=[f"{b}:{t[:40]}" for b, t, _ in panels()])
def test_every_panel_query_returns_data(history: Stack, board: str, title: str,
                                        query: str) -> None:
    series = history.query(fill(query))
    assert series, f"{board} / {title}: no data for {fill(query)}"
    assert any(any(v is not None for v in row[1:]) for s in series for row in s["values"])


@pytest.mark.integration
def test_every_variable_query_returns_values(history: Stack) -> None:
    registry = yaml.safe_load(history.registry.read_text())
    for board in BOARDS.values():
        for variable in board.get("templating", {}).get("list", []):
            if variable["type"] == "query":
                assert history.query(fill(variable["query"])), variable["name"]
    # The community variable: the label splits into the name shown and the id filtered on,
    # as Grafana's named groups would split it.
    community = next(v for v in BOARDS["green-goal.json"]["templating"]["list"]
                     if v["name"] == "community")
    pattern = re.compile(community["regex"].strip("/").replace("(?<", "(?P<"))
    (series,) = history.query(fill(community["query"]))
    split = {m["value"]: m["text"] for _, label in series["values"]
             if (m := pattern.match(label))}
    assert split == {c["id"]: f"{c['name']} ({c['id']})" for c in registry["communities"]}
    city = registry["communities"][0]["city"]
    of_city = {c["id"] for c in registry["communities"] if c["city"] == city}
    (series,) = history.query(fill(community["query"].replace("$city", city)))
    ids = {m["value"] for _, label in series["values"] if (m := pattern.match(label))}
    assert ids == of_city


def test_dashboards_build_check_cli() -> None:
    run = subprocess.run([sys.executable, "-m", "collector", "dashboards", "build", "--check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert re.search("up to date", run.stdout)
    assert Path(GENERATED).is_dir()


def _panel_query(board: str, title_start: str) -> str:
    return next(q for b, t, q in panels() if b == board and t.startswith(title_start))


@pytest.mark.integration
def test_open_alerts_panel_counts_alerts_whose_last_state_is_raised(history: Stack) -> None:
    last: dict[tuple[str, str], tuple[str, str]] = {}
    for s in history.query("SELECT state, device, rule, severity FROM alert"):
        for _, state, device, rule, severity in s["values"]:
            last[(device, rule)] = (state, severity)
    expected: dict[str, int] = {}
    for state, severity in last.values():
        if state == "raised":
            expected[severity] = expected.get(severity, 0) + 1
    series = history.query(fill(_panel_query("overview.json", "Open alerts")))
    got = {s["tags"]["severity"]: s["values"][0][1] for s in series}
    assert got == expected and sum(got.values()) > 0, (got, expected)


@pytest.mark.integration
def test_device_map_places_every_device_that_reported_a_status(history: Stack) -> None:
    registry = yaml.safe_load(history.registry.read_text())
    rows = {}
    for s in history.query(fill(_panel_query("overview.json", "Devices by last status"))):
        _, online, lat, lon = s["values"][0]
        rows[s["tags"]["device"]] = (online, lat, lon)
    positions = {d["id"]: (d["lat"], d["lon"]) for d in registry["devices"]}
    assert set(rows) == set(positions)
    assert all(rows[d][1:] == positions[d] for d in rows)
    # Two devices came back online after the run; the others' last word was their will.
    assert sum(online for online, _, _ in rows.values()) == 2


@pytest.mark.integration
def test_the_device_variable_narrows_the_lamp_panels(history: Stack) -> None:
    query = _panel_query("lighting.json", "Power drawn")
    lamp = history.query(fill('SHOW TAG VALUES FROM "streetlight" WITH KEY = "device"'))[0][
        "values"][0][1]
    everyone = history.query(fill(query))
    one = history.query(fill(query.replace("$device", lamp)))
    total = sum(v or 0 for s in everyone for _, v in s["values"])
    single_lamp = sum(v or 0 for s in one for _, v in s["values"])
    assert 0 < single_lamp < total


@pytest.fixture(scope="module")
def report_dir(history: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    run = history.sct("report", "--out", str(out), "--range", "3d")
    assert run.returncode == 0, run.stderr
    # Every Chinese glyph drawn from a CJK font: matplotlib warns of any it lacks.
    assert "missing from font" not in run.stderr, run.stderr
    return out


@pytest.mark.integration
def test_report_writes_the_goal_board_and_key_charts(history: Stack, report_dir: Path) -> None:
    out = report_dir
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["city-shares.png", *(png for _, _, png in KEY_CHARTS)])
    for png in out.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png.name
    page = (out / "index.html").read_text()
    # The figures are the KPI run's: the same communities, cities and counts, in Chinese.
    kpis = history.query("SELECT last(meets) AS m, last(assessing) AS a, last(\"name\") AS n "
                         "FROM community_kpi GROUP BY community, city")
    meeting = sum(s["values"][0][1] for s in kpis)
    assessing = sum(1 for s in kpis if s["values"][0][2])
    assert f"{int(meeting)} 个社区全部指标达标，{assessing} 个评估中（数据不足）" in page, page
    registry = yaml.safe_load(history.registry.read_text())
    for c in registry["communities"]:
        assert f"<td class=name>{c['name']}</td><td class=name>{c['id']}</td>" in page
        assert f"<td class=name>{labels.city_name(c['city'], 'zh')}</td>" in page
    assert "<td class=name>全省</td>" in page      # the province's total
    assert "基础设施绿色化" in page and "*2022 占比" in page
    assert NO_DATA["zh"] not in page
    assert page.count("<img") == len(KEY_CHARTS) + 1


def test_report_refuses_a_bad_range() -> None:
    run = subprocess.run([sys.executable, "-m", "collector", "report", "--out", "/tmp/x",
                          "--range", "two days"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "not a duration" in run.stderr


@pytest.mark.integration
def test_the_report_loads_in_a_real_browser_and_shows_the_chinese_names(
        history: Stack, report_dir: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]
    url = (report_dir / "index.html").as_uri()
    shot = tmp_path / "report.png"
    run = subprocess.run([*flags, "--window-size=1400,2400", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-3000:]
    # Loaded without errors: every chart image decoded, no script error on the console.
    assert 'data-images="ok"' in dom.stdout, dom.stdout[:2000]
    assert "Uncaught" not in dom.stderr and "ERR_FILE_NOT_FOUND" not in dom.stderr, dom.stderr
    registry = yaml.safe_load(history.registry.read_text())
    for c in registry["communities"]:
        assert c["name"] in dom.stdout and labels.city_name(c["city"], "zh") in dom.stdout
    if os.environ.get("SCT_REPORT_SCREENSHOT"):   # how the README's picture is made
        shutil.copy(shot, os.environ["SCT_REPORT_SCREENSHOT"])
