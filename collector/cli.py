"""``sct``: the one command line (CONTRACT section 5). Parses arguments and calls one function.

Exit codes: 0 done, 1 failed while running, 2 bad configuration, registry or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from collector import settings as config
from collector.errors import ConfigError
from devices.registry import RegistryError

log = logging.getLogger("sct")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sct`` console script and ``python -m collector``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        code: int = args.run(args)
        return code
    except (ConfigError, RegistryError) as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sct", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="run the collector service")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.set_defaults(run=_collect)

    p = sub.add_parser("simulate", help="simulated devices publishing over MQTT")
    p.add_argument("--registry", type=Path, required=True)
    p.add_argument("--config", type=Path, help="TOML file; its [mqtt] section is used")
    p.add_argument("--rate", type=float, default=100.0, help="readings per second (100)")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, help="seconds to run (default 60)")
    bound.add_argument("--count", type=int, help="readings to publish, then stop")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--report", type=Path, help="also write the counts as JSON here")
    p.add_argument("--credentials", type=Path, metavar="DIR",
                   help="log every device in with its own secret, from the installers' "
                   "sheets (sct security generate's installers/); TLS from [mqtt]")
    p.add_argument("--since", type=_duration, default=0.0,
                   help="first publish the history from this long ago (e.g. 2d, 12h; max 29d)")
    p.add_argument("--history-period", type=float, default=300.0,
                   help="seconds between a device's readings in the history (300)")
    p.add_argument("--faults", help="inject faults: 'all' or a comma-separated list of types")
    p.add_argument("--truth", type=Path, help="write the injected faults here (CSV)")
    p.set_defaults(run=_simulate)

    p = sub.add_parser("registry", help="device registry tools")
    rsub = p.add_subparsers(required=True, metavar="ACTION")
    g = rsub.add_parser("generate", help="a registry of realistic communities, as YAML")
    g.add_argument("--communities", type=int, required=True)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--json", action="store_true",
                   help="write it in JSON form (also YAML 1.2; read as a stream: for large "
                   "registries)")
    g.add_argument("--out", type=Path)
    g.set_defaults(run=_registry_generate)

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

    p = sub.add_parser("security", help="broker credentials, ACL and TLS for a registry")
    ssub = p.add_subparsers(required=True, metavar="ACTION")
    g = ssub.add_parser("generate", help="password file, ACL, CA and server certificate, "
                        "mosquitto.conf, the collector's env file, installers' sheets")
    g.add_argument("--registry", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--mqtt-port", type=int, default=1883,
                   help="plain MQTT listener, passwords still required (1883; 0: none)")
    g.add_argument("--tls-port", type=int, default=8883, help="TLS listener (8883; 0: none)")
    g.add_argument("--bind", default="127.0.0.1", help="listeners' address (127.0.0.1)")
    g.add_argument("--host", action="append", dest="hosts", metavar="NAME",
                   help="a name or address clients use for the broker; repeat for more "
                   "(default: localhost and 127.0.0.1); the first goes in collector.env")
    g.add_argument("--conf-dir", type=Path, help="where the broker will see these files, "
                   "e.g. a container's mount point (default: --out)")
    g.add_argument("--data-dir", type=Path, help="the broker's persistence folder")
    g.add_argument("--broker-user", default="mosquitto", metavar="NAME|UID",
                   help="the account the broker runs as; gets the files it reads (mosquitto)")
    g.add_argument("--client-user", metavar="NAME|UID", help="the account the collector and "
                   "simulator run as; gets collector.env and the sheets (default: unchanged)")
    g.add_argument("--rotate", action="append", default=[], metavar="DEVICE",
                   help="give this device a new secret; repeat for more")
    g.set_defaults(run=_security_generate)

    p = sub.add_parser("report", help="the goal board and key charts as PNG files and HTML")
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path, required=True, help="directory for index.html and PNGs")
    p.add_argument("--range", default="2d", help="how far back, e.g. 12h, 2d (2d)")
    p.set_defaults(run=_report)

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
    t.add_argument("--value-column", action="append", required=True, dest="value_columns")
    t.add_argument("--detector", default="combined",
                   help="one of: " + ", ".join(_detector_names()))
    t.set_defaults(run=_detect_replay)

    p = sub.add_parser("demo", help="the whole thing on one machine, from nothing")
    p.add_argument("--communities", type=int, default=20)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, help="stop after this many seconds "
                   "(default: run until Ctrl-C)")
    p.add_argument("--keep", type=Path, help="keep data here instead of a temporary dir")
    p.add_argument("--since", default="1d", help="history to publish first (1d: a whole "
                   "night, so dimming and the night-time flow minimum show)")
    p.set_defaults(run=_demo)
    return parser


def _collect(args: argparse.Namespace) -> int:
    from collector.app import Collector

    settings = config.load(args.config)
    asyncio.run(_until_signal(Collector(settings).run))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from devices import registry
    from simulators.publisher import Access, Plan, simulate

    settings = config.load(args.config)
    if args.rate <= 0:
        raise ConfigError("--rate must be above 0")
    reg = registry.load(args.registry)
    # Every run is bounded: a count alone still stops after an hour.
    duration = args.duration if args.duration is not None else (
        3600.0 if args.count is not None else 60.0)
    if args.since > 29 * 86_400:
        raise ConfigError("--since is at most 29d: older readings are refused by the collector")
    plan = Plan(rate=args.rate, duration=duration, count=args.count, seed=args.seed,
                root=settings.mqtt.topic_root, faults=_faults(args, reg, duration),
                since_s=args.since, history_period_s=args.history_period)
    access = Access.from_sheets(args.credentials, settings.mqtt.ssl_context()) \
        if args.credentials else Access(tls=settings.mqtt.ssl_context())
    published = asyncio.run(_until_signal(simulate, reg, settings.mqtt.url, plan, access))
    print(published.table(), flush=True)
    if args.report:
        args.report.write_bytes(orjson.dumps({"readings": published.readings,
                                              "events": published.events}))
    return 0


def _duration(text: str) -> float:
    """'90s', '15m', '12h', '2d' (or plain seconds) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (say 90s, 15m, 12h, 2d)") from exc


def _faults(args: argparse.Namespace, reg: Any, duration: float) -> list[Any]:
    """Faults planned over the run (from a tenth of it on, or over the history and the run
    with ``--since``), their truth written out."""
    import random
    import time

    from simulators import faults

    if not args.faults:
        if args.truth:
            raise ConfigError("--truth needs --faults")
        return []
    try:
        types = faults.select(args.faults)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    now = time.time()
    devices = sorted(reg.devices.values(), key=lambda d: d.id)
    if args.since:
        injected = faults.plan(devices, types, now - args.since, now, random.Random(args.seed),
                               per_type=1)
    else:
        injected = faults.plan(devices, types, now + duration / 10, now + duration * 0.9,
                               random.Random(args.seed), per_type=1,
                               max_hours=duration / 2 / 3600)
    if args.truth:
        faults.write_truth(args.truth, injected)
    return injected


async def _until_signal(run: Any, *args: Any) -> Any:
    """Await ``run(*args, stop)``, setting ``stop`` on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(*args, stop)


def _registry_generate(args: argparse.Namespace) -> int:
    from simulators.registry_gen import generate, to_yaml

    if args.communities < 1:
        raise ConfigError("--communities must be at least 1")
    data = generate(args.communities, args.seed)
    text = json.dumps(data, ensure_ascii=False) if args.json else to_yaml(data)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _deadletter_list(args: argparse.Namespace) -> int:
    from collections import deque

    from collector.deadletter import DeadLetterStore, to_json

    settings = config.load(args.config)
    store = DeadLetterStore(settings.storage.dir, 0)
    shown = deque(store.read(args.reason), maxlen=max(1, args.limit))
    for reject in shown:
        if args.json:
            sys.stdout.buffer.write(to_json(reject))
        else:
            payload = reject.payload[:120].decode("utf-8", "replace")
            print(f"{reject.received_ms}  {reject.reason:<18} {reject.topic}\n"
                  f"    {reject.detail}\n    payload: {payload}")
    if not args.json:
        print(f"{len(shown)} shown from {store.path}", file=sys.stderr)
    if store.unreadable:
        print(f"{store.unreadable} unreadable lines skipped (torn by a crash or damaged)",
              file=sys.stderr)
    return 0


def _deadletter_replay(args: argparse.Namespace) -> int:
    from collector.errors import WriteError
    from collector.replay import replay

    settings = config.load(args.config)
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


def _dashboards_build(args: argparse.Namespace) -> int:
    from dashboards import build

    settings = config.load(args.config)
    year, share = settings.kpi.target_year, settings.kpi.target_share
    if args.check:
        wrong = build.stale(target_share=share, target_year=year)
        if wrong:
            print(f"sct: stale dashboards: {', '.join(wrong)}; run sct dashboards build",
                  file=sys.stderr)
            return 1
        print("dashboards are up to date")
        return 0
    for path in build.write(target_share=share, target_year=year):
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
    boards = build.render(settings.kpi.target_share, settings.kpi.target_year)
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


def _security_generate(args: argparse.Namespace) -> int:
    from devices import registry
    from security.generate import Listeners, SecurityError, generate

    reg = registry.load(args.registry)
    if not args.mqtt_port and not args.tls_port:
        raise ConfigError("--mqtt-port and --tls-port are both 0: no listener left")
    listeners = Listeners(mqtt_port=args.mqtt_port or None, tls_port=args.tls_port or None,
                          bind=args.bind, hosts=args.hosts or ["localhost", "127.0.0.1"],
                          conf_dir=args.conf_dir, data_dir=args.data_dir,
                          broker_user=args.broker_user, client_user=args.client_user)
    try:
        done = generate(reg, args.out, listeners, tuple(args.rotate))
    except SecurityError as e:
        raise ConfigError(str(e)) from e
    print(f"{args.out}: {len(done.created)} new secrets, {len(done.rotated)} rotated, "
          f"{done.kept} kept, {len(done.removed)} removed; CA "
          f"{'created' if done.ca_created else 'kept'}, server certificate "
          f"{'created' if done.server_cert_created else 'kept'}")
    print(f"start the broker: mosquitto -c {args.out / 'mosquitto.conf'}  (reload after a "
          "rotation: kill -HUP its pid)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from collector import kpi
    from collector.errors import WriteError
    from collector.sink.influx import InfluxWriter
    from dashboards import build, report

    settings = config.load(args.config)
    year, share = settings.kpi.target_year, settings.kpi.target_share
    try:
        range_s = int(_duration(args.range))
    except argparse.ArgumentTypeError as e:
        print(f"sct: --range: {e}", file=sys.stderr)
        return 2

    async def run() -> report.Report:
        async with InfluxWriter(settings.influx) as writer:
            return await report.gather(writer.query, build.render(share, year), args.range,
                                       range_s, share, year)

    try:
        figures = asyncio.run(run())
    except WriteError as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 1
    for path in report.write(figures, args.out,
                             lambda name, value: kpi.passes(settings.kpi, name, value)):
        print(path)
    if not figures.assessed:
        print("sct: warning: no community_kpi in the range; run sct kpi (or a collector) first",
              file=sys.stderr)
    return 0


def _kpi(args: argparse.Namespace) -> int:
    import time

    from collector import kpi
    from collector.errors import WriteError
    from collector.sink.influx import InfluxWriter
    from collector.sink.lineprotocol import encode_many
    from devices import registry

    settings = config.load(args.config)
    reg = registry.load(settings.registry.path)

    async def run() -> list[kpi.CommunityKpi]:
        async with InfluxWriter(settings.influx) as writer:
            kpis = await kpi.compute(reg, writer.query, settings.kpi)
            await writer.write(encode_many(kpi.points(kpis, int(time.time() * 1000))))
            return kpis

    try:
        kpis = asyncio.run(run())
    except WriteError as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 1
    names = list(kpi.INDICATORS)
    print("community".ljust(20) + " ".join(n[:12].rjust(12) for n in names) + "  meets")
    for k in kpis:
        cells = " ".join(f"{k.values[n]:>11.2f}{'' if k.passed[n] else '!'}".rjust(12)
                         for n in names)
        print(f"{k.community:<20}{cells}  {'yes' if k.meets else 'no'}")
    target = settings.kpi.city_targets.get(settings.kpi.target_year, 0.0)
    print(f"\ncity shares meeting every indicator (target {target:.0%} by "
          f"{settings.kpi.target_year}; ! = below its threshold):")
    for city, (meeting, total) in kpi.city_shares(kpis).items():
        share = meeting / total
        print(f"  {city:<14} {meeting}/{total} = {share:.0%}  "
              f"{'on track' if share >= target else 'behind'}")
    return 0


def _detector_names() -> list[str]:
    from collector.detect.catalog import DETECTORS

    return sorted(DETECTORS)


def _alerts(args: argparse.Namespace) -> int:
    from collector.detect.alerts import AlertBook

    settings = config.load(args.config)
    book = AlertBook(settings.storage.dir / "alerts.json")
    book.load()
    for alert in book.open:
        if args.json:
            sys.stdout.buffer.write(alert.payload() + b"\n")
        else:
            print(f"{alert.ts_ms}  {alert.severity:<8} {alert.rule:<24} {alert.device:<28} "
                  f"{alert.message}")
    if not args.json:
        print(f"{len(book.open)} open alerts", file=sys.stderr)
    return 0


def _detect_replay(args: argparse.Namespace) -> int:
    from collector.detect.replay import main as replay_main

    if args.detector not in _detector_names():
        raise ConfigError(f"--detector must be one of {', '.join(_detector_names())}")
    try:
        return replay_main(str(args.file), args.time_column, args.value_columns, args.detector)
    except (OSError, ValueError) as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from collector.demo import Demo

    return Demo(args.communities, args.rate, args.duration, args.keep, args.since).run()
