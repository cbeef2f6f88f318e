"""The error tree. Every error a user can meet is one of these; the CLI maps them to
exit codes and one-line messages in one place (``cli.py``).

    FollowupError                 exit 1  anything unexpected
    ├── ConfigError               exit 2  bad sequences.yaml, template, option or setting
    │   └── StoreConfigError      exit 2  bad --db URL, unreachable database, bad lead table
    │       ├── StoreCorrupt      exit 2  corrupt or foreign file, unwritable file or folder
    │       └── PrivilegeError    exit 2  the role lacks a privilege the command needs
    ├── StoreError                exit 1  the database failed mid-run (StoreCorrupt is one too)
    └── LockHeld                  exit 75 another run holds the run lock

Channel outcomes (sent, failed, unknown, throttled, account-fatal) are *results*, not
exceptions: see ``channels/base.py``. Exceptions are for what stops a whole command.
"""

from __future__ import annotations

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_SEND_FAILURES = 3
EXIT_LOCKED = 75
# deadlock_detected, serialization_failure: the transaction was rolled back, whole
CONFLICT_SQLSTATES = ("40P01", "40001")


class FollowupError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code = EXIT_UNEXPECTED


class ConfigError(FollowupError):
    """The configuration or the command line is wrong; nothing was sent."""

    exit_code = EXIT_USAGE


class StoreConfigError(ConfigError):
    """The database URL, connection or lead table is not usable; nothing was sent."""


class StoreError(FollowupError):
    """The database failed while a command was running. ``sqlstate``: the driver's code,
    when it gave one (Postgres)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    @property
    def conflict(self) -> bool:
        """The database aborted the transaction for a lock cycle with another one (40P01)
        or a serialization conflict (40001): it rolled back whole, and may be run again."""
        return self.sqlstate in CONFLICT_SQLSTATES


class StoreCorrupt(StoreConfigError, StoreError):
    """The database file is corrupt, not a database, or cannot be written where it must be
    (file, folder): named with the fix, exit 2, at open or in the middle of a command."""


class PrivilegeError(StoreConfigError):
    """The database role (or OS user) lacks a privilege the command needs: named with the
    grant that gives it; checked before anything is sent (``store/access.py``)."""


class LockHeld(FollowupError):
    """Another run holds the run lock (SQLite); this run did nothing."""

    exit_code = EXIT_LOCKED
