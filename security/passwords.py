"""Secrets and the Mosquitto password file.

The file is Mosquitto 2's own format, as ``mosquitto_passwd`` writes it:
``user:$7$<iterations>$<salt, base64>$<PBKDF2-HMAC-SHA512, base64>``. 101 iterations is
Mosquitto's default; it is enough here because every secret is 32 random bytes, not a
password a person chose, so there is nothing for a dictionary attack to find, and the
broker hashes on every connect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

ITERATIONS = 101
SALT_BYTES = 12


def new_secret() -> str:
    """A device secret: 32 random bytes, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The password-file form of ``secret``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, 64)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def verify(secret: str, hashed: str) -> bool:
    """True when ``secret`` matches a ``$7$`` entry (for tests and for ``rotate``)."""
    _, kind, iterations, salt, digest = hashed.split("$")
    if kind != "7":
        raise ValueError(f"not a Mosquitto $7$ hash: ${kind}$...")
    mine = hash_secret(secret, base64.b64decode(salt), int(iterations)).rsplit("$", 1)[1]
    return hmac.compare_digest(mine, digest)


def read(path: Path) -> dict[str, str]:
    """user -> hash, in file order; empty when there is no file yet."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            user, hashed = line.split(":", 1)
            out[user] = hashed
    return out


def write(path: Path, entries: dict[str, str]) -> None:
    """The password file, readable by its owner only."""
    text = "".join(f"{user}:{hashed}\n" for user, hashed in entries.items())
    write_private(path, text)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, also while it is being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
