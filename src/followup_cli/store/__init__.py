"""Stores: ``open_store(url)`` picks SQLite (a file path or ``sqlite:///…``), Postgres, or
a private SQLite database in memory (``memory:``, for tests: ``store/memory.py``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreConfigError
from .base import SqlStore

DEFAULT_DB_NAME = "followup.db"


def resolve_db(db: str | None, config_path: str | Path | None) -> str:
    """The database URL or path a command uses: --db / FOLLOWUP_DB, else a file beside the
    config. A database in memory is refused (StoreConfigError): it would start empty and be
    gone when the command ends; it is for tests, through ``open_store("memory:")``."""
    from .memory import is_memory_url

    if db and is_memory_url(db):
        raise StoreConfigError(
            f"--db {db.strip()} is a database in memory, only for tests (it starts empty and "
            "is gone when the command ends); give a file path, sqlite:///file.db or "
            "postgresql://user@host/db"
        )
    if db:
        return db
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    return str(base / DEFAULT_DB_NAME)


def sqlite_path(db: str) -> Path | None:
    """The file a --db value names when it is SQLite; None for Postgres and for a database
    in memory. The one place a database URL is told apart (raises StoreConfigError with
    the fix)."""
    from .memory import is_memory_url

    url = db.strip()
    if url.startswith(("postgresql://", "postgres://")) or is_memory_url(url):
        return None
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise StoreConfigError(
                f"{db}: write sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        return Path(rest[1:])  # sqlite:///x.db -> x.db ; sqlite:////abs.db -> /abs.db
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreConfigError(
            f"{db}: unsupported database scheme {scheme!r}; use a file path, sqlite:///file.db "
            "or postgresql://user@host/db"
        )
    if not url:
        raise StoreConfigError("empty --db; use a file path or postgresql://…")
    return Path(url)


def open_store(
    db: str, lead_table: str = "leads", migrate: bool = True, readonly: bool = False
) -> SqlStore:
    """Open (and migrate) the store a URL names. Raises StoreConfigError with the fix.

    ``readonly`` opens without changing anything on disk (dry runs, explain); pair it with
    ``SqlStore.scratch()`` when the tool's tables may not exist yet.
    """
    from .memory import MemoryStore, is_memory_url

    path = sqlite_path(db)
    if is_memory_url(db):
        store: SqlStore = MemoryStore(lead_table)
    elif path is None:
        from .postgres import PostgresStore

        store = PostgresStore(db.strip(), lead_table)
    else:
        from .sqlite import SQLiteStore

        store = SQLiteStore(str(path), lead_table, readonly)
    if migrate and not readonly:
        try:
            store.lead_columns()  # the right database: it holds the lead table
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["SqlStore", "open_store", "resolve_db", "sqlite_path", "DEFAULT_DB_NAME"]
