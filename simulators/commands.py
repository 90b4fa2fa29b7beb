"""The simulators' commands: ``simulate``, ``registry generate`` and ``demo``.

A command module is the top layer: it may use the collector's configuration (the simulator
reads the same ``[mqtt]`` section), while ``simulators``' own modules import only ``devices``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import orjson

from collector import settings as config
from collector.cli import duration, until_signal
from collector.errors import ConfigError


def register(sub: Any) -> None:
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
    p.add_argument("--since", type=duration, default=0.0,
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

    p = sub.add_parser("demo", help="the whole thing on one machine, from nothing")
    p.add_argument("--communities", type=int, default=20)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration", type=float, help="stop after this many seconds "
                   "(default: run until Ctrl-C)")
    p.add_argument("--keep", type=Path, help="keep data here instead of a temporary dir")
    p.add_argument("--since", default=DEMO_HISTORY,
                   help=f"history to publish first ({DEMO_HISTORY}: whatever the hour, a whole "
                   "night and a whole day, so the goal board has the data for every indicator)")
    p.add_argument("--cluster", action="store_true",
                   help="cluster mode: 3 RabbitMQ nodes, 2 collectors, one killed halfway "
                   "(README, Scaling out)")
    p.set_defaults(run=_demo)


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
    published = asyncio.run(until_signal(simulate, reg, settings.mqtt.url, plan, access))
    print(published.table(), flush=True)
    if args.report:
        args.report.write_bytes(orjson.dumps({"readings": published.readings,
                                              "events": published.events}))
    return 0


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


#: The demo's history: a whole night (18:00-06:00 China time) lies inside the last 36 h at
#: any hour, and the leak indicator needs 24 h; an hour more for the runs' own start.
DEMO_HISTORY = "37h"


def _demo(args: argparse.Namespace) -> int:
    from simulators.demo import Demo

    if args.cluster:
        from simulators.cluster_demo import ClusterDemo
        return ClusterDemo(min(args.communities, 8), args.rate, args.duration or 120.0,
                           args.keep, "1h" if args.since == DEMO_HISTORY else args.since).run()
    return Demo(args.communities, args.rate, args.duration, args.keep, args.since).run()
