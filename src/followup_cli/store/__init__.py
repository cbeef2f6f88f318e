"""Stores: ``open_store(url)`` picks SQLite (a file path or ``sqlite:///…``) or Postgres."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreConfigError
from .base import SqlStore

DEFAULT_DB_NAME = "followup.db"


def resolve_db(db: str | None, config_path: str | Path | None) -> str:
    """The database URL or path to use: --db / FOLLOWUP_DB, else a file beside the config."""
    if db:
        return db
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    return str(base / DEFAULT_DB_NAME)


def open_store(
    db: str, lead_table: str = "leads", migrate: bool = True, readonly: bool = False
) -> SqlStore:
    """Open (and migrate) the store a URL names. Raises StoreConfigError with the fix.

    ``readonly`` opens without changing anything on disk (dry runs, explain); pair it with
    ``SqlStore.scratch()`` when the tool's tables may not exist yet.
    """
    url = db.strip()
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store: SqlStore = PostgresStore(url, lead_table)
    elif url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise StoreConfigError(
                f"{db}: write sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = rest[1:]  # sqlite:///x.db -> x.db ; sqlite:////abs.db -> /abs.db
        from .sqlite import SQLiteStore

        store = SQLiteStore(path, lead_table, readonly)
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreConfigError(
            f"{db}: unsupported database scheme {scheme!r}; use a file path, sqlite:///file.db "
            "or postgresql://user@host/db"
        )
    elif not url:
        raise StoreConfigError("empty --db; use a file path or postgresql://…")
    else:
        from .sqlite import SQLiteStore

        store = SQLiteStore(url, lead_table, readonly)
    if migrate and not readonly:
        try:
            store.lead_columns()  # the right database: it holds the lead table
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["SqlStore", "open_store", "resolve_db", "DEFAULT_DB_NAME"]
