"""The dashboards' commands: ``dashboards build``, ``dashboards push`` and ``report``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from collector import settings as config
from collector.cli import duration


def register(sub: Any) -> None:
    p = sub.add_parser("dashboards", help="Grafana dashboards as code")
    gsub = p.add_subparsers(required=True, metavar="ACTION")
    g = gsub.add_parser("build", help="write dashboards/generated/*.json")
    g.add_argument("--config", type=Path)
    g.add_argument("--check", action="store_true", help="fail when the files are stale")
    g.set_defaults(run=_dashboards_build)
    g = gsub.add_parser("push", help="put the dashboards into a running Grafana (HTTP API)")
    g.add_argument("--config", type=Path)
    g.add_argument("--url", required=True, help="Grafana's address, e.g. http://127.0.0.1:3000")
    g.add_argument("--token", help="a service-account token (Editor); default: the "
                   "environment's GRAFANA_TOKEN, which keeps it out of the shell history")
    g.set_defaults(run=_dashboards_push)

    p = sub.add_parser("report", help="the goal board and key charts as PNG files and HTML")
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path, required=True, help="directory for index.html and PNGs")
    p.add_argument("--range", default="2d", help="how far back, e.g. 12h, 2d (2d)")
    p.set_defaults(run=_report)


def _dashboards_build(args: argparse.Namespace) -> int:
    from dashboards import build

    settings = config.load(args.config)
    year, share, plan = settings.kpi.target_year, settings.kpi.target_share, settings.kpi.plan()
    if args.check:
        wrong = build.stale(target_share=share, target_year=year, plan=plan)
        if wrong:
            print(f"sct: stale dashboards: {', '.join(wrong)}; run sct dashboards build",
                  file=sys.stderr)
            return 1
        print("dashboards are up to date")
        return 0
    for path in build.write(target_share=share, target_year=year, plan=plan):
        print(path)
    return 0


def _dashboards_push(args: argparse.Namespace) -> int:
    import os

    from dashboards import DATASOURCE_UID, build, push

    token = args.token or os.environ.get("GRAFANA_TOKEN")
    if not token:
        print("sct: no token: give --token or set GRAFANA_TOKEN", file=sys.stderr)
        return 2
    settings = config.load(args.config)
    boards = build.render(settings.kpi.target_share, settings.kpi.target_year,
                          settings.ui.language, settings.kpi.plan())
    try:
        pushed = push.push(args.url, token, boards)
    except push.PushError as e:
        print(f"sct: {e}", file=sys.stderr)
        return 1
    for url in pushed.dashboards:
        print(f"pushed {url}")
    if pushed.datasource_missing:
        print(f"sct: warning: Grafana has no datasource with uid {DATASOURCE_UID!r}; the panels "
              "will show errors until it exists (see dashboards/provisioning/datasources/)",
              file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from collector import kpi
    from collector.errors import WriteError
    from collector.sink.influx import InfluxWriter
    from dashboards import build, report

    settings = config.load(args.config)
    year, share, plan = settings.kpi.target_year, settings.kpi.target_share, settings.kpi.plan()
    try:
        range_s = int(duration(args.range))
    except argparse.ArgumentTypeError as e:
        print(f"sct: --range: {e}", file=sys.stderr)
        return 2

    async def run() -> report.Report:
        async with InfluxWriter(settings.influx) as writer:
            # The English boards: the same queries, and the titles the report looks for.
            return await report.gather(writer.query, build.render(share, year, "en", plan),
                                       args.range, range_s, share, year, settings.ui.language,
                                       plan)

    try:
        figures = asyncio.run(run())
    except WriteError as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 1
    try:
        written = report.write(figures, args.out,
                               lambda name, value: kpi.passes(settings.kpi, name, value))
    except report.FontMissing as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    if not figures.cities:
        print("sct: warning: no city_kpi in the range; run sct kpi (or a collector) first",
              file=sys.stderr)
    return 0
