"""The service's own commands: ``collect``, ``deadletter``, ``alerts``, ``kpi``, ``detect``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from collector import settings as config
from collector.cli import Commands, until_signal
from collector.errors import ConfigError
from collector.records import Reject


def register(sub: Commands) -> None:
    p = sub.add_parser("collect", help="run the collector service")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.set_defaults(run=_collect)

    p = sub.add_parser("deadletter", help="the refused messages, with their reasons")
    dsub = p.add_subparsers(required=True, metavar="ACTION")
    d = dsub.add_parser("list", help="show what was refused and why")
    d.add_argument("--config", type=Path)
    d.add_argument("--reason", help="only this reason code")
    d.add_argument("--limit", type=int, default=100, help="at most this many, newest (100)")
    d.add_argument("--json", action="store_true", help="one JSON record a line")
    d.set_defaults(run=_deadletter_list)

    d = dsub.add_parser("replay", help="send stored refusals through the pipeline again")
    d.add_argument("--config", type=Path)
    d.add_argument("--reason", help="only this reason code")
    d.set_defaults(run=_deadletter_replay)

    p = sub.add_parser("kpi", help="compute the green-community indicators now and write them")
    p.add_argument("--config", type=Path)
    p.set_defaults(run=_kpi)

    p = sub.add_parser("alerts", help="the open alerts")
    p.add_argument("--config", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON record a line")
    p.set_defaults(run=_alerts)

    p = sub.add_parser("detect", help="detector tools")
    tsub = p.add_subparsers(required=True, metavar="ACTION")
    t = tsub.add_parser("replay", help="run a detector over a CSV file; CSV on stdout")
    t.add_argument("file", type=Path)
    t.add_argument("--time-column", required=True)
    t.add_argument("--value-column", action="append", default=[], dest="value_columns",
                   help="a column to score (several: each alone, or one device for t2)")
    t.add_argument("--detector", help="one of: " + ", ".join(_detector_names())
                   + " (default: the one the collector runs live, detect.statistical_model)")
    t.add_argument("--warmup", type=int, metavar="ROWS",
                   help="t2: rows learnt before the first score (default: the live warm-up, "
                   "a day of readings, 300 to 1,440); for a benchmark's own training part")
    t.add_argument("--config", type=Path, help="settings file (for the live detector and "
                   "its false-alarm budget)")
    t.add_argument("--rule", choices=["water_quality"],
                   help="run a domain rule instead, over columns mapped with --field")
    t.add_argument("--field", action="append", default=[], dest="fields",
                   metavar="COLUMN=FIELD", help="with --rule: e.g. Cl=chlorine_mg_l")
    t.set_defaults(run=_detect_replay)


def _collect(args: argparse.Namespace) -> int:
    from collector.app import Collector

    settings = config.load(args.config)
    asyncio.run(until_signal(Collector(settings).run))
    return 0


def _deadletter_list(args: argparse.Namespace) -> int:
    from collections import deque

    from collector.deadletter import DeadLetterStore

    settings = config.load(args.config)
    if settings.source.kind == "amqp":
        return _cluster_deadletters(settings, args)
    store = DeadLetterStore(settings.storage.dir, 0)
    shown = deque(store.read(args.reason), maxlen=max(1, args.limit))
    for reject in shown:
        _show(reject, args.json)
    if not args.json:
        print(f"{len(shown)} shown from {store.path}", file=sys.stderr)
    if store.unreadable:
        print(f"{store.unreadable} unreadable lines skipped (torn by a crash or damaged)",
              file=sys.stderr)
    return 0


def _show(reject: Reject, as_json: bool, where: str = "") -> None:
    """One dead letter on stdout: a JSON record, or three lines for a person."""
    from collector.deadletter import to_json

    if as_json:
        sys.stdout.buffer.write(to_json(reject))
        return
    payload = reject.payload[:120].decode("utf-8", "replace")
    print(f"{reject.received_ms}  {reject.reason:<18} {reject.topic}{where}\n"
          f"    {reject.detail}\n    payload: {payload}")


def _deadletter_replay(args: argparse.Namespace) -> int:
    from collector.errors import WriteError
    from collector.replay import replay

    settings = config.load(args.config)
    if settings.source.kind == "amqp":
        return _cluster_deadletters(settings, args, replaying=True)
    try:
        outcome = asyncio.run(replay(settings, args.reason))
    except WriteError as exc:
        print(f"sct: InfluxDB cannot take the replayed readings ({exc}); nothing more was "
              "marked replayed, run it again later", file=sys.stderr)
        return 1
    failing = ", ".join(f"{r}={n}" for r, n in sorted(outcome.still_failing.items()))
    print(f"replayed {outcome.replayed} dead letters: {outcome.written} lines written, "
          f"{sum(outcome.still_failing.values())} still failing ({failing or 'none'})")
    return 0


def _cluster_deadletters(settings: config.Settings, args: argparse.Namespace,
                         replaying: bool = False) -> int:
    """``deadletter list`` and ``replay`` in cluster mode: the replicated stream."""
    from collector.cluster import deadletters
    from collector.cluster.broker import connect
    from collector.cluster.topology import Names

    names = Names(settings.amqp.prefix)

    async def run() -> int:
        connection, _ = await connect(settings.amqp, name="sct deadletter")
        try:
            if replaying:
                done, skipped = await deadletters.replay(connection, names, args.reason)
                print(f"replayed {done} dead letters to their topics ({skipped} InfluxDB "
                      "refusals left as they are)")
                return 0
            found = await deadletters.records(connection, names, args.reason)
        finally:
            await connection.close()
        shown = found[-max(1, args.limit):]
        for offset, reject in shown:
            _show(reject, args.json, f"  (offset {offset})")
        if not args.json:
            print(f"{len(shown)} shown of {len(found)} in the stream {names.deadletters}",
                  file=sys.stderr)
        return 0

    return asyncio.run(run())


def _kpi(args: argparse.Namespace) -> int:
    import time

    from collector import goal, kpi, kpitext
    from collector.errors import WriteError
    from collector.sink.influx import InfluxWriter
    from collector.sink.lineprotocol import encode_many
    from devices import registry

    settings = config.load(args.config)
    reg = registry.load(settings.registry.path)

    async def run() -> tuple[list[kpi.CommunityKpi], list[goal.CityGoal]]:
        async with InfluxWriter(settings.influx) as writer:
            kpis, cities, points = await goal.evaluate(reg, writer.query, settings.kpi,
                                                       int(time.time() * 1000))
            await writer.write(encode_many(points))
            return kpis, cities

    try:
        kpis, goals = asyncio.run(run())
    except WriteError as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 1
    for line in kpitext.communities(kpis, settings.ui.language):
        print(line)
    print()
    for line in kpitext.cities(goals, settings.kpi.target_year, settings.ui.language):
        print(line)
    return 0


def _detector_names() -> list[str]:
    from collector.detect.catalog import DETECTORS, VECTOR_DETECTORS

    return sorted([*DETECTORS, *VECTOR_DETECTORS])


def _alerts(args: argparse.Namespace) -> int:
    from collector.detect.alerts import Alert, AlertBook

    settings = config.load(args.config)
    book = AlertBook(settings.storage.dir / "alerts.json")
    book.load()
    opened = book.open
    if settings.source.kind == "amqp":
        # Cluster mode: each collector knows only its partitions' alerts; InfluxDB has all.
        from collector.cluster.takeover import open_alerts
        from collector.sink.influx import InfluxWriter

        async def from_influx() -> list[Alert]:
            async with InfluxWriter(settings.influx) as writer:
                return await open_alerts(writer.query)

        opened = asyncio.run(from_influx())
    for alert in opened:
        if args.json:
            sys.stdout.buffer.write(alert.payload() + b"\n")
        else:
            print(f"{alert.ts_ms}  {alert.severity:<8} {alert.rule:<24} {alert.device:<28} "
                  f"{alert.message}")
    if not args.json:
        print(f"{len(opened)} open alerts", file=sys.stderr)
    return 0


def _detect_replay(args: argparse.Namespace) -> int:
    from collector.detect.replay import main as replay_main
    from collector.detect.rulereplay import parse_fields

    if args.rule:
        if not args.fields:
            raise ConfigError("--rule needs --field COLUMN=FIELD (e.g. Cl=chlorine_mg_l)")
    elif not args.value_columns:
        raise ConfigError("say --value-column COLUMN (or --rule with --field)")
    live = config.load(args.config).detect
    detector = args.detector or live.statistical_model
    if detector not in _detector_names():
        raise ConfigError(f"--detector must be one of {', '.join(_detector_names())}")
    if args.warmup is not None and args.warmup < 1:
        raise ConfigError("--warmup must be at least 1")
    try:
        if args.rule:
            return replay_main(str(args.file), args.time_column, [], args.rule,
                               parse_fields(args.fields))
        return replay_main(str(args.file), args.time_column, args.value_columns, detector,
                           alerts_per_day=live.statistical_alerts_per_100_days / 100,
                           warmup=args.warmup)
    except (OSError, ValueError) as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 2
