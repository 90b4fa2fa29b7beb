"""``sct``: the one command line (CONTRACT section 5), assembled from its parts.

Each package registers its own commands with a ``register(subparsers)`` function, listed as
an entry point of the group ``sct.commands`` (``pyproject.toml``):

    collector.commands    collect, deadletter list|replay, alerts, kpi, detect replay
    collector.cluster.commands   cluster setup
    simulators.commands   simulate, registry generate, demo
    dashboards.commands   dashboards build|push, report
    security.commands     security generate

This module only assembles them and runs the chosen one, so the service imports nothing of
the simulators or the dashboards (a part is imported by name, when the command line is
built). Exit codes: 0 done, 1 failed while running, 2 bad configuration, registry or
arguments (one line naming the key or the entry).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from collector.errors import ConfigError
from devices.registry import RegistryError

log = logging.getLogger("sct")

GROUP = "sct.commands"
#: The parts when the package's metadata is not there (run from a source tree).
PARTS = ("collector.commands", "collector.cluster.commands", "simulators.commands",
         "dashboards.commands", "security.commands")

Commands = Any  # argparse's private _SubParsersAction: what ``register`` receives


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sct`` console script and ``python -m collector``."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A lost AMQP connection is said once by the source; aiormq adds a traceback of its own.
    logging.getLogger("aiormq").setLevel(logging.ERROR)
    try:
        code: int = args.run(args)
        return code
    except (ConfigError, RegistryError) as exc:
        print(f"sct: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    """The whole command line: every part's commands."""
    made = argparse.ArgumentParser(prog="sct", description=__doc__.split("\n\n")[0])
    made.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = made.add_subparsers(required=True, metavar="COMMAND")
    for register in _parts():
        register(sub)
    return made


def _parts() -> list[Any]:
    found = sorted(entry_points(group=GROUP), key=lambda e: PARTS.index(e.value.split(":")[0])
                   if e.value.split(":")[0] in PARTS else len(PARTS))
    if found:
        return [e.load() for e in found]
    return [importlib.import_module(name).register for name in PARTS]


def duration(text: str) -> float:
    """'90s', '15m', '12h', '2d' (or plain seconds) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (say 90s, 15m, 12h, 2d)") from exc


async def until_signal(run: Any, *args: Any) -> Any:
    """Await ``run(*args, stop)``, setting ``stop`` on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(*args, stop)
