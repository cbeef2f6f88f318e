"""Test helpers: a lead store on either backend, configs written to disk, the CLI run as
the installed command.

``LeadDB`` creates the host app's ``leads`` table the way a host app would keep it:
ISO text timestamps and JSON text on SQLite; timestamptz and jsonb on Postgres (in a
schema of its own per test, named in the URL so subprocesses see the same schema; the URL
also names it as the connections' ``application_name``, so that a test tells its own
connections from those of a test that another pytest-xdist worker runs at the same time).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

PG_BASE = os.environ.get("FOLLOWUP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
LEAD_COLUMNS = (
    "id",
    "account_id",
    "user_id",
    "conversation_id",
    "recipient_id",
    "username",
    "first_name",
    "score",
    "status",
    "last_inbound_at",
    "last_inbound_text",
    "last_outbound_at",
    "converted_at",
    "timezone",
    "attributes",
)
TS = ("last_inbound_at", "last_outbound_at", "converted_at")


def iso(dt: datetime | str | None) -> str | None:
    if dt is None or isinstance(dt, str):
        return dt
    return dt.astimezone(UTC).isoformat()


def pg_available() -> str | None:
    """None when Postgres answers; else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_BASE, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001
        return f"Postgres at {PG_BASE} is not reachable: {str(exc).strip().splitlines()[0]}"


@dataclass
class LeadDB:
    """The host app's lead store on one backend, plus raw access for assertions."""

    backend: str
    url: str
    schema: str | None = None
    path: Path | None = None
    _pg: Any = field(default=None, repr=False)

    @classmethod
    def sqlite(cls, tmp: Path) -> LeadDB:
        path = tmp / "leads.db"
        conn = sqlite3.connect(path)
        conn.execute(
            "CREATE TABLE leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
            "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, "
            "score INTEGER, status TEXT, last_inbound_at TEXT, last_inbound_text TEXT, "
            "last_outbound_at TEXT, converted_at TEXT, timezone TEXT, attributes TEXT)"
        )
        conn.commit()
        conn.close()
        return cls("sqlite", str(path), path=path)

    @classmethod
    def postgres(cls) -> LeadDB:
        import psycopg

        schema = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg.connect(PG_BASE, autocommit=True)
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
            "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, "
            "score INTEGER, status TEXT, last_inbound_at TIMESTAMPTZ, last_inbound_text TEXT, "
            "last_outbound_at TIMESTAMPTZ, converted_at TIMESTAMPTZ, timezone TEXT, attributes JSONB)"
        )
        sep = "&" if "?" in PG_BASE else "?"
        url = f"{PG_BASE}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
        return cls("postgres", url, schema=schema, _pg=conn)

    def settled(self, seconds: float = 10.0) -> None:
        """After SIGKILLing a run: wait (bounded) until Postgres has finished a statement the
        dead client had already sent. A COMMIT on the wire when the client died still lands
        on the server, perhaps after the test's next read; SQLite has no server. Only this
        test's connections count (its URL names them), not those of tests running beside it."""
        if self._pg is None:
            return
        deadline = time.monotonic() + seconds
        busy = (
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "AND application_name = %s AND state IN ('active', 'idle in transaction')"
        )
        while self._pg.execute(busy, [self.schema]).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            self._pg.close()
            self._pg = None

    # ------------------------------------------------------------------ writes
    def _values(self, row: dict[str, Any]) -> list[Any]:
        vals = []
        for c in LEAD_COLUMNS:
            v = row.get(c)
            if c in TS:
                v = iso(v)
            if c == "attributes" and v is not None and not isinstance(v, str):
                v = json.dumps(v)
            vals.append(v)
        return vals

    def insert(self, *rows: dict[str, Any]) -> None:
        cols = ", ".join(LEAD_COLUMNS)
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url)
            conn.executemany(
                f"INSERT INTO leads ({cols}) VALUES ({', '.join('?' * len(LEAD_COLUMNS))})",
                [self._values(r) for r in rows],
            )
            conn.commit()
            conn.close()
        else:
            with self._pg.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self.schema}.leads ({cols}) VALUES "
                    f"({', '.join(['%s'] * len(LEAD_COLUMNS))})",
                    [self._values(r) for r in rows],
                )

    def update(self, lead_id: str, **cols: Any) -> None:
        vals = {k: (iso(v) if k in TS else v) for k, v in cols.items()}
        if "attributes" in vals and not isinstance(vals["attributes"], str | None):
            vals["attributes"] = json.dumps(vals["attributes"])
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url)
            sets = ", ".join(f"{k} = ?" for k in vals)
            conn.execute(f"UPDATE leads SET {sets} WHERE id = ?", [*vals.values(), lead_id])
            conn.commit()
            conn.close()
        else:
            sets = ", ".join(f"{k} = %s" for k in vals)
            self._pg.execute(
                f"UPDATE {self.schema}.leads SET {sets} WHERE id = %s", [*vals.values(), lead_id]
            )

    def query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Raw SQL against the tool's tables (``?`` placeholders on both backends)."""
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.url)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(sql, params).fetchall()]
            finally:
                conn.close()
        from psycopg.rows import dict_row

        self._pg.execute(f"SET search_path = {self.schema}")
        with self._pg.cursor(row_factory=dict_row) as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def tracking(self) -> list[dict[str, Any]]:
        return self.query(
            "SELECT lead_id, sequence_id, message_id, variant_id, status, error_code, reason "
            "FROM followup_tracking ORDER BY lead_id, sequence_id, message_id"
        )


def lead(lead_id: str, **over: Any) -> dict[str, Any]:
    """A lead that is silent and inside the window unless told otherwise."""
    row: dict[str, Any] = {
        "id": lead_id,
        "account_id": "acct_a",
        "user_id": "u_1",
        "conversation_id": f"conv_{lead_id}",
        "recipient_id": f"ig_{lead_id}",
        "username": f"user_{lead_id}",
        "first_name": "Ana",
        "score": 4,
        "status": "qualified",
        "last_inbound_text": "how much?",
        "timezone": "Europe/Madrid",
        "attributes": {"interest": "pricing"},
    }
    row.update(over)
    return row


def base_config(**over: Any) -> dict[str, Any]:
    """A small config as a dict: one account, one two-step sequence inside a 24h window."""
    cfg: dict[str, Any] = {
        "version": 1,
        "settings": {
            "timezone": "Europe/Madrid",
            "no_response_hours": 2,
            "min_interval_hours": 4,
            "max_per_lead_per_day": 2,
            "quiet_hours": {"start": "21:00", "end": "09:00"},
        },
        "channel": {"type": "console", "window_hours": 24},
        "accounts": [
            {
                "id": "acct_a",
                "user_id": "u_1",
                "ig_user_id": "17841000000000001",
                "token_env": "FOLLOWUP_TOKEN_A",
            }
        ],
        "sequences": [
            {
                "id": "s1",
                "name": "Main",
                "priority": 1,
                "trigger": [{"field": "score", "op": "between", "value": [2, 6]}],
                "messages": [
                    {
                        "id": "m1",
                        "delay_hours": 3,
                        "template": "Hi {{ lead.first_name }}, step one",
                    },
                    {
                        "id": "m2",
                        "delay_hours": 20,
                        "template": "Hi {{ lead.first_name }}, step two",
                    },
                ],
            }
        ],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def followup(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the installed command (``python -m followup_cli`` in this interpreter)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "followup_cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def followup_in_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``followup(...)`` in this process: the same ``main`` (exit code, stdout, stderr, the
    same environment rules), without the ~0.4 s of CPU a new interpreter costs to import
    the package. For tests of what a command does with the database; a test of the process
    itself (a signal, a lock between processes, file modes, what reaches a terminal) starts
    the installed command."""
    import contextlib
    import io

    from followup_cli import logsetup, redact
    from followup_cli.cli import main

    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    out, err = io.StringIO(), io.StringIO()
    redact.clear()  # what a new process knows: nothing registered yet
    try:
        for key in [k for k in os.environ if k.startswith("FOLLOWUP_")]:
            del os.environ[key]
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        logsetup.reset()
        redact.clear()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(
        ["followup", *args], code, stdout=out.getvalue(), stderr=err.getvalue()
    )


def spawn_followup(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the installed command without waiting (concurrency and crash tests).

    Same environment rules as ``followup``; stdout and stderr are pipes, read them with
    ``communicate()``.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "followup_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def graph_config(path: Path, base_url: str, **channel: Any) -> Path:
    """``base_config`` on the Instagram channel pointed at a fake Graph API, written to path.

    No retries and a generous rate limit unless told otherwise, so tests count deliveries
    rather than retries or deferrals.
    """
    ch = {
        "type": "instagram",
        "api_base": base_url,
        "api_version": "v21.0",
        "window_hours": 24,
        "max_retries": 0,
        "messages_per_hour": 10_000,
    }
    ch.update(channel)
    return write_config(path, base_config(channel=ch))


# A transaction the server aborts for a conflict, on demand: a DO block that raises the
# SQLSTATE of a deadlock (the server rolls back whatever the transaction did before it).
_CONFLICT_PG = (
    "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected (a test''s conflict)' "
    "USING ERRCODE = '{state}'; END $$"
)


def conflict_at(
    monkeypatch: Any, pattern: str, times: int = 1, skip: int = 0, sqlstate: str = "40P01"
) -> list[str]:
    """The statements whose text holds ``pattern``, after the first ``skip`` of them, meet a
    conflict with another writer ``times`` times (SQLSTATE 40P01 deadlock, or 40001). On
    Postgres the server raises it (the transaction aborted for real), through the driver
    and the store's own translation; inside a pipeline (``SqlStore.pipelined``) it is
    issued before the statement and raised at the next wait, as a real one is. On SQLite,
    which never has one, the store raises the StoreError Postgres' translation gives.
    Returns the statements met so far (those that got the conflict are prefixed "!")."""
    import threading

    from followup_cli.errors import StoreError
    from followup_cli.store.postgres import PostgresStore
    from followup_cli.store.sqlite import SQLiteStore

    met: list[str] = []
    inside = threading.local()  # a statement's wrapper calling another store method

    def hit(sql: str) -> bool:
        if pattern not in sql or getattr(inside, "on", False):
            return False
        n = len(met)
        met.append(("!" if skip <= n < skip + times else "") + sql)
        return skip <= n < skip + times

    pg_now, pg_later = PostgresStore.execute, PostgresStore.execute_later

    def pg(name: str) -> None:
        real = getattr(PostgresStore, name)

        def wrapped(self: Any, sql: str, params: Any = None) -> Any:
            if hit(sql):
                do = pg_later if name.endswith("_later") and self.pipelining else pg_now
                do(self, _CONFLICT_PG.format(state=sqlstate))
            inside.on = True
            try:
                return real(self, sql, params)
            finally:
                inside.on = False

        monkeypatch.setattr(PostgresStore, name, wrapped)

    def lite(name: str) -> None:
        real = getattr(SQLiteStore, name)

        def wrapped(self: Any, sql: str, params: Any = None) -> Any:
            if hit(sql):
                raise StoreError(f"{self.path}: deadlock detected (a test's conflict)", sqlstate)
            return real(self, sql, params)

        monkeypatch.setattr(SQLiteStore, name, wrapped)

    for name in ("execute", "query", "execute_later", "query_later"):
        pg(name)
    for name in ("execute", "query"):  # (its *_later are the base's: they call these)
        lite(name)
    return met
