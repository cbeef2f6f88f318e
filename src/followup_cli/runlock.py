"""The SQLite run lock: one ``followup run`` at a time per database file.

An advisory ``flock`` on ``<db>.lock``; the holder writes who it is (pid, host, start) into
the file so a second run can say which run holds it. The kernel drops the lock when the
holder dies, even under SIGKILL, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from .errors import LockHeld, StoreConfigError


class RunLock:
    def __init__(self, path: str | Path, wait_seconds: float = 0.0) -> None:
        self.path = Path(path)
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreConfigError(
                f"{self.path}: cannot open the run lock file ({exc.strerror}); the folder of "
                "the database must be writable by the user cron runs as"
            ) from None
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd, settle_seconds=0.5)
                    os.close(fd)
                    raise LockHeld(
                        f"another run holds the lock on {self.path.name.removesuffix('.lock')}"
                        f"{holder}; this run did nothing (try again later or raise --wait)"
                    ) from None
                time.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        data = json.dumps(info).encode()
        os.pwrite(fd, data, 0)  # written before the truncate, so a reader never sees it empty
        os.ftruncate(fd, len(data))
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_holder(fd: int, settle_seconds: float = 0.0) -> str:
    """Who holds the lock, as a phrase; "" if unknown.

    The holder writes its name just after it takes the lock, so an empty or half-written
    file is read again for up to ``settle_seconds`` before giving up on naming it."""
    deadline = time.monotonic() + settle_seconds
    while True:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError, UnicodeDecodeError):
            data = {}
        if isinstance(data, dict) and data.get("pid") or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if not isinstance(data, dict) or not data:
        return ""
    return f" (pid {data.get('pid')} on {data.get('host')}, started {data.get('started_at')})"
