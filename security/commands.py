"""The broker security command: ``security generate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collector.errors import ConfigError


def register(sub: Any) -> None:
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
