"""Files the tool writes are private: created ``0600`` (owner read and write only).

Reports, opt-out exports, logs, metrics and the SQLite database hold personal data or
figures about it; a file the tool creates is readable by its owner alone. A file that
already exists keeps the mode its owner gave it (the tool never chmods a user's file):
to let node_exporter read the metrics file, ``chmod 0644`` it once and the tool keeps
that mode across its atomic rewrites.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

PRIVATE = 0o600


def open_private(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", errors: str | None = None
) -> IO:
    """``open(path, mode)`` for ``w``/``a`` (text or ``b``), creating the file ``0600``."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if "a" in mode else os.O_TRUNC
    fd = os.open(path, flags, PRIVATE)
    try:
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` (replacing its content), creating the file ``0600``. A
    path that cannot be written (a folder, no permission, no folder) is one line, exit 2."""
    from .errors import ConfigError

    try:
        if isinstance(data, bytes):
            with open_private(path, "wb") as fh:
                fh.write(data)
        else:
            with open_private(path, "w", encoding=encoding) as fh:
                fh.write(data)
    except OSError as exc:
        what = "a folder; give a file name in it" if Path(path).is_dir() else exc.strerror
        raise ConfigError(f"{path}: cannot write it ({what})") from None


def atomic_write_private(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Replace ``path`` atomically (a temporary file in the same folder, then a rename), so
    a reader sees the old content or the new, never half. A new file is ``0600``; an
    existing one keeps its mode."""
    target = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else data
    try:
        keep: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        keep = None
    # mkstemp creates the file 0600; the name does not end in .prom (node_exporter skips it)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if keep is not None and keep != PRIVATE:
            os.chmod(tmp, keep)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_private(path: str | Path) -> bool:
    """Create ``path`` empty and ``0600`` unless it exists; True when it was created here.
    Before SQLite opens a database the tool creates: SQLite then gives its ``-wal`` and
    ``-shm`` files the database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


__all__ = ["PRIVATE", "open_private", "write_private", "atomic_write_private", "create_private"]
