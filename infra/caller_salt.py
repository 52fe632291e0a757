"""The caller-id key of a data dir: ``gridpulse up`` creates it once, every command of that
data dir reads it (``GRIDPULSE_CALLER_SALT`` overrides it)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

CALLER_SALT_FILE = "caller_salt"


def read_caller_salt(data_dir: Path) -> str | None:
    """The caller-id key ``gridpulse up`` keeps in ``data_dir`` (None when there is none)."""
    try:
        salt = (Path(data_dir) / CALLER_SALT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return salt or None


def ensure_caller_salt(data_dir: Path) -> str:
    """The caller-id key in ``data_dir``, created once (256 random bits, owner-only file)
    and then kept: every later ``up`` and worker uses the same one."""
    existing = read_caller_salt(data_dir)
    if existing:
        return existing
    path = Path(data_dir) / CALLER_SALT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `up` wrote it meanwhile, or it is empty
        kept = read_caller_salt(data_dir)
        if kept is None:
            raise OSError(f"{path} is empty: delete it or write the key into it") from None
        return kept
    with os.fdopen(fd, "w") as fh:
        fh.write(salt + "\n")
    return salt
