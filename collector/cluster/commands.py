"""``sct cluster setup``: declare the cluster's topology from the registry."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from collector import settings as config
from collector.cli import Commands
from collector.errors import ConfigError


def register(sub: Commands) -> None:
    p = sub.add_parser("cluster", help="cluster mode (RabbitMQ): set up the topology")
    csub = p.add_subparsers(required=True, metavar="ACTION")
    c = csub.add_parser("setup", help="declare partitions, bindings per community, the "
                                      "unrouted queue and the dead-letter stream (idempotent)")
    c.add_argument("--config", type=Path)
    c.add_argument("--registry", type=Path, help="registry file (default: registry.path)")
    c.add_argument("--partitions", type=int,
                   help="partition count (default: amqp.partitions); fixed once chosen")
    c.set_defaults(run=_setup)


def _setup(args: argparse.Namespace) -> int:
    from collector.cluster import topology
    from collector.cluster.broker import connect
    from collector.errors import BrokerError
    from devices import registry

    settings = config.load(args.config)
    amqp = settings.amqp
    if args.partitions is not None:
        if args.partitions < 1:
            raise ConfigError("--partitions must be at least 1")
        amqp = amqp.model_copy(update={"partitions": args.partitions})
    reg = registry.load(args.registry or settings.registry.path)

    async def run() -> list[str]:
        connection, _ = await connect(amqp, name="sct cluster setup")
        try:
            return await topology.setup(connection, amqp, settings.mqtt.topic_root,
                                        sorted(reg.communities))
        finally:
            await connection.close()

    try:
        added = asyncio.run(run())
    except BrokerError as exc:
        print(f"sct: {exc}")
        return 1
    for line in added:
        print(f"added {line}")
    print(f"{len(reg.communities)} communities on {amqp.partitions} partitions: "
          f"{'nothing to add' if not added else f'{len(added)} things added'}")
    return 0
