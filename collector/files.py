"""The collector's own small files: written atomically, and set aside when unreadable.

Whatever the collector finds in ``storage.dir`` (a file torn by a crash, a file of an older
format, something another program left there) it must still start: the damaged file is
renamed aside with one clear log line, never deleted (an operator may want to look at it),
and the collector goes on with what can still be read.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: written to a temporary file, fsynced, then renamed,
    so a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _sync_dir(path.parent)


def set_aside(path: Path, why: str) -> Path | None:
    """Rename an unreadable file to ``<name>.bad-<epoch s>`` and say so once; the new path,
    or None when even the rename failed (then it is only logged)."""
    aside = path.with_name(f"{path.name}.bad-{int(time.time())}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        log.error("%s is unreadable (%s) and could not be set aside (%s); ignoring it",
                  path, why, exc)
        return None
    log.error("%s is unreadable (%s): set aside as %s; starting without it", path, why,
              aside.name)
    return aside


def _sync_dir(directory: Path) -> None:
    # The rename itself is durable only once the folder is synced.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
