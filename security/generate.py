"""``sct security generate``: every file the broker and the installers need, in one folder.

    passwd                 one hashed secret per device, the collector and the operators
    acl                    who may publish and read what (security/acl.py)
    ca.crt ca.key          the development CA (kept once made)
    server.crt server.key  the TLS listener's certificate, for ``--host`` names
    mosquitto.conf         listeners, no anonymous access, the files above
    collector.env          the collector's SCT_MQTT__* lines
    operator.env           the operators' MQTT user for reading alerts
    installers/<community>.csv   device,username,password: the plaintext, for installers

Generating again keeps every existing secret and certificate: it adds what new registry
devices need and drops devices that left the registry. ``--rotate DEVICE`` gives those
devices a new secret and rewrites their row of their community's sheet; no other line of
any file changes. Secret files are written readable by their owner only.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from devices.registry import Registry
from security import acl, certs, passwords
from security.passwords import write_private

SHEET_HEADER = ["device", "username", "password"]
log = logging.getLogger(__name__)


@dataclass
class Generated:
    created: list[str] = field(default_factory=list)    # users with a new secret
    rotated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    ca_created: bool = False
    server_cert_created: bool = False


@dataclass
class Listeners:
    mqtt_port: int | None = 1883       # plain MQTT (still with passwords); None: none
    tls_port: int | None = 8883
    bind: str = "127.0.0.1"
    hosts: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    #: Where the broker finds these files (a container's mount point); default: ``out``.
    conf_dir: Path | None = None
    data_dir: Path | None = None       # persistence on when given
    #: The account the broker runs as (Mosquitto started as root switches to it before it
    #: reads the password file): a name, or a number for a container's user. Generating as
    #: root gives it the secret files the broker reads.
    broker_user: str = "mosquitto"
    #: The account the collector and simulator run as, given collector.env and the sheets
    #: when generating as root (a container's user); None: left to whoever generated them.
    client_user: str | None = None


class SecurityError(ValueError):
    """Raised when the registry and the folder cannot be made consistent; says why."""


def generate(registry: Registry, out: Path, listeners: Listeners,
             rotate: tuple[str, ...] = ()) -> Generated:
    unknown = [d for d in rotate if d not in registry.devices]
    if unknown:
        raise SecurityError(f"--rotate: not in the registry: {', '.join(unknown)}")
    clash = {acl.COLLECTOR_USER, acl.OPERATOR_USER} & set(registry.devices)
    if clash:
        raise SecurityError(f"a device id is a reserved MQTT user name: {', '.join(clash)}")
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()   # the broker's config names files by absolute path
    result = Generated()
    old = passwords.read(out / "passwd")
    new: dict[str, str] = {}
    plain: dict[str, str] = {}     # user -> new plaintext, written once below
    for user in [acl.COLLECTOR_USER, acl.OPERATOR_USER, *registry.devices]:
        if user in old and user not in rotate:
            new[user] = old[user]
            result.kept += 1
            continue
        plain[user] = passwords.new_secret()
        new[user] = passwords.hash_secret(plain[user])
        (result.rotated if user in old else result.created).append(user)
    result.removed = [u for u in old if u not in new]
    passwords.write(out / "passwd", new)
    (out / "acl").write_text(acl.acl_text(registry), encoding="utf-8")
    result.ca_created = certs.make_ca(out)
    result.server_cert_created = certs.make_server(out, listeners.hosts)
    (out / "mosquitto.conf").write_text(mosquitto_conf(listeners, listeners.conf_dir or out),
                                        encoding="utf-8")
    _give_to_broker(out, listeners.broker_user)
    _env_files(out, plain, listeners)
    _sheets(out / "installers", registry, plain, set(result.removed))
    if listeners.client_user is not None:
        _give(out, listeners.client_user, ["collector.env", "operator.env",
                                           *(f"installers/{p.name}" for p in
                                             (out / "installers").glob("*.csv"))])
    return result


def _give_to_broker(out: Path, user: str) -> None:
    """The files the broker reads (and no one else should) to its account."""
    _give(out, user, ["passwd", "acl", "server.key"])


def _give(out: Path, user: str, names: list[str]) -> None:
    """chown ``names`` to ``user`` when we can (root) and the account exists here."""
    if os.geteuid() != 0:
        return
    try:
        uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        log.warning("no account %r here: %s must be readable by whoever runs as it", user,
                    ", ".join(names))
        return
    for name in names:
        if (out / name).exists():
            os.chown(out / name, uid, -1)


def mosquitto_conf(listeners: Listeners, conf_dir: Path) -> str:
    lines = [
        "# Generated by `sct security generate`. No anonymous access on any listener.",
        *([f"user {listeners.broker_user}"] if not listeners.broker_user.isdigit() else []),
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {conf_dir / 'passwd'}",
        f"acl_file {conf_dir / 'acl'}",
        "# The collector acknowledges once a batch is durable: many messages in flight, and",
        "# a deep queue for its persistent session while it restarts.",
        "max_inflight_messages 0",
        "max_queued_messages 2000000",
        "max_queued_bytes 0",
    ]
    if listeners.data_dir is not None:
        lines += ["persistence true", f"persistence_location {listeners.data_dir}/",
                  "autosave_interval 30"]
    # Per listener, and only after a `listener` line: before one, a listener option makes
    # Mosquitto open a default listener on port 1883 of every interface (seen with 2.0.11).
    # The client id is the user name: a device cannot take over another's session.
    own_id = "use_username_as_clientid true"
    if listeners.mqtt_port is not None:
        lines += ["", f"listener {listeners.mqtt_port} {listeners.bind}", own_id]
    if listeners.tls_port is not None:
        lines += ["", f"listener {listeners.tls_port} {listeners.bind}", own_id,
                  f"cafile {conf_dir / 'ca.crt'}", f"certfile {conf_dir / 'server.crt'}",
                  f"keyfile {conf_dir / 'server.key'}", "tls_version tlsv1.2",
                  "# Client certificates are optional: a device proves itself by its secret.",
                  "require_certificate false"]
    return "\n".join(lines) + "\n"


def _env_files(out: Path, plain: dict[str, str], listeners: Listeners) -> None:
    """collector.env and operator.env, when their user got a (new) secret."""
    host = listeners.hosts[0]
    if listeners.tls_port is not None:
        url = f"mqtts://{host}:{listeners.tls_port}"
        ca = f"SCT_MQTT__CA_FILE={(listeners.conf_dir or out) / 'ca.crt'}\n"
    else:
        url, ca = f"mqtt://{host}:{listeners.mqtt_port}", ""
    if acl.COLLECTOR_USER in plain:
        write_private(out / "collector.env",
                      f"SCT_MQTT__URL={url}\n{ca}SCT_MQTT__USERNAME={acl.COLLECTOR_USER}\n"
                      f"SCT_MQTT__PASSWORD={plain[acl.COLLECTOR_USER]}\n")
    if acl.OPERATOR_USER in plain:
        write_private(out / "operator.env",
                      f"MQTT_URL={url}\nMQTT_USERNAME={acl.OPERATOR_USER}\n"
                      f"MQTT_PASSWORD={plain[acl.OPERATOR_USER]}\n")


def _sheets(folder: Path, registry: Registry, plain: dict[str, str],
            removed: set[str]) -> None:
    """Per community: rows of devices with a new secret replace or join the sheet; rows of
    devices that left the registry go; every other row stays as it was."""
    by_community: dict[str, list[str]] = {}
    for device in registry.devices.values():
        by_community.setdefault(device.community.id, []).append(device.id)
    for community, devices in by_community.items():
        path = folder / f"{community}.csv"
        rows = {}
        if path.exists():
            with path.open(newline="", encoding="utf-8") as f:
                rows = {r["device"]: r for r in csv.DictReader(f)}
        changed = False
        for device_id in devices:
            if device_id in plain:
                rows[device_id] = {"device": device_id, "username": device_id,
                                   "password": plain[device_id]}
                changed = True
        for gone in [d for d in rows if d in removed]:
            del rows[gone]
            changed = True
        if changed or not path.exists():
            text = io.StringIO()
            writer = csv.DictWriter(text, SHEET_HEADER, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows.values())
            write_private(path, text.getvalue())
