"""Least privilege (issue 9): what the connected role (Postgres) or OS user (SQLite) may do
with the tool's tables, and opening a store for what a command needs, no more.

Three needs, one per kind of command:

* ``READ``: report, audit, status, explain, plan, handoff, leads list, unknown list,
  optout --list/--export, run --dry-run. SELECT on the lead table and the tool's tables
  is enough; nothing is written (SQLite: the file is opened ``mode=ro``). When the tool's
  tables are missing or behind, the command answers from a transaction that is rolled
  back if the role may create them there (SQLite: a fresh store, in TEMP); otherwise it
  exits 2 telling to run ``followup migrate``.
* ``WRITE``: run, optout, erase, unknown resolve, events ingest. Checked up front: the
  schema is current (a role that may is allowed to bring it up to date, as runs always
  did; one that may not is told to run ``followup migrate``), and the role holds SELECT,
  INSERT, UPDATE and DELETE on the tool's tables and USAGE on their sequences. A
  privilege refused later (SQLSTATE 42501) is the same exit-2 line (``postgres.py``).
* ``MIGRATE``: ``followup migrate``: CREATE on the schema and ownership of the tool's
  tables (SQLite: a writable file and folder).

Every refusal is a ``PrivilegeError`` (exit 2) naming the role, the privilege and the fix
(``followup db grants``), before anything is sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PrivilegeError
from .base import SqlStore, actor
from .migrations import MIGRATIONS

READ, WRITE, MIGRATE = "read", "write", "migrate"
REPORT = "report"  # a read that also refreshes outcomes when the role may write them

MIGRATIONS_TABLE = "followup_migrations"
# The audit log and its head: a runner appends (and an erasure scrubs details, an UPDATE),
# never deletes, so the grants leave DELETE out and a runner cannot remove its own rows.
APPEND_ONLY = ("followup_audit", "followup_audit_head")
_CREATE = re.compile(r"^\s*CREATE\s+(TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


def tool_relations() -> tuple[list[str], list[str], list[str]]:
    """(tables, views, sequences) the migrations create, in order; ``followup_migrations``
    first. A table with an auto-increment id owns a sequence ``<table>_id_seq`` (Postgres)."""
    tables, views, seqs = [MIGRATIONS_TABLE], [], []
    for _, statements in MIGRATIONS:
        for stmt in statements:
            text = stmt[1] if isinstance(stmt, tuple) else stmt
            m = _CREATE.match(text)
            if not m:
                continue
            kind, name = m.group(1).upper(), m.group(2)
            if kind == "VIEW":
                if name not in views:
                    views.append(name)
            elif name not in tables:
                tables.append(name)
                if "{id}" in text:
                    seqs.append(f"{name}_id_seq")
    return tables, views, seqs


@dataclass
class Access:
    """What the role may do; ``missing_*`` name each privilege it lacks, as in a GRANT."""

    dialect: str
    role: str
    where: str  # 'schema "crm"' or the SQLite file
    schema: str | None = None
    pending: list[str] = field(default_factory=list)
    fresh: bool = False  # the tool's tables do not exist at all
    missing_migrate: list[str] = field(default_factory=list)
    missing_write: list[str] = field(default_factory=list)
    missing_read: list[str] = field(default_factory=list)

    @property
    def may_migrate(self) -> bool:
        return not self.missing_migrate

    @property
    def may_write(self) -> bool:
        return not self.missing_write and not self.missing_read


def probe(store: SqlStore) -> Access:
    """The role's privileges on the store's schema, lead table and the tool's relations."""
    acc = _probe_postgres(store) if store.dialect == "postgres" else _probe_sqlite(store)
    if acc.missing_read:
        return acc  # refused anyway; followup_migrations may not even be readable
    acc.pending = store.pending_migrations()
    acc.fresh = len(acc.pending) == len(MIGRATIONS)
    return acc


def _probe_sqlite(store: SqlStore) -> Access:
    path = Path(getattr(store, "path", store.url))
    who = actor()
    acc = Access("sqlite", who, str(path))
    folder = path.resolve().parent
    if not os.access(folder, os.W_OK | os.X_OK):
        acc.missing_write.append(f"write access to the folder {folder} (journal, run lock)")
    if not os.access(path, os.W_OK):
        acc.missing_write.append(f"write access to {path}")
    acc.missing_migrate = list(acc.missing_write)
    return acc


def _probe_postgres(store: SqlStore) -> Access:
    head = store.query(store.q("access_schema"))
    if not head:
        role = store.query(store.q("access_role"))[0]["role"]
        acc = Access("postgres", role, "search_path")
        acc.missing_read.append("USAGE on a schema of its search_path (none exists)")
        acc.missing_write = list(acc.missing_read)
        acc.missing_migrate = list(acc.missing_read)
        return acc
    h = head[0]
    acc = Access("postgres", str(h["role"]), f'schema "{h["schema"]}"', schema=str(h["schema"]))
    if not h["usage"]:
        need = f"USAGE on schema {h['schema']}"
        acc.missing_read.append(need)
        acc.missing_write.append(need)
        acc.missing_migrate.append(need)
        return acc
    if not h["may_create"]:
        acc.missing_migrate.append(f"CREATE on schema {h['schema']}")
    tables, views, seqs = tool_relations()
    rows = store.query(
        store.q("access_tool_relations"),
        {"s": f'"{acc.schema}"', "names": [*tables, *views, *seqs]},
    )
    order = {
        n: i for i, n in reversed(list(enumerate(["followup_tracking", *tables, *views, *seqs])))
    }
    for r in sorted(rows, key=lambda r: order.get(r["name"], len(order))):
        name = r["name"]
        if (
            not r["owns"]
            and name not in seqs
            and not any(m.startswith("ownership") for m in acc.missing_migrate)
        ):
            acc.missing_migrate.append(f"ownership of the tool's tables ({name}, …)")
        if r["kind"] == "S":
            if not r["sel"]:
                acc.missing_write.append(f"USAGE on sequence {name}")
            continue
        if not r["sel"]:
            acc.missing_read.append(f"SELECT on {name}")
        if name in views or name == MIGRATIONS_TABLE:
            continue  # the runner reads these only
        needed = (("INSERT", r["ins"]), ("UPDATE", r["upd"]), ("DELETE", r["del"]))
        if name in APPEND_ONLY:  # the runner never deletes audit rows
            needed = needed[:2]
        lacking = [p for p, ok in needed if not ok]
        if lacking:
            acc.missing_write.append(f"{', '.join(lacking)} on {name}")
    lead = store.query(store.q("access_lead_table"), {"t": store.lead_table})
    if lead and not lead[0]["sel"]:
        acc.missing_read.insert(0, f"SELECT on {store.lead_table}")
    return acc


def _fix(acc: Access, kind: str) -> str:
    if acc.dialect == "sqlite":
        return f"give {acc.role} that access (read commands need none)"
    if kind == "reader":
        return f"grant it with `followup db grants --reader {acc.role}` (run as the tables' owner)"
    return f"grant it with `followup db grants --runner {acc.role}` (run as the tables' owner)"


def _lacks(acc: Access, missing: list[str]) -> str:
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    who = f"role {acc.role}" if acc.dialect == "postgres" else acc.role
    return f"{who} lacks {missing[0]}{more}"


def behind_error(acc: Access) -> PrivilegeError:
    """The schema is missing or behind and this role may not bring it up to date."""
    n = len(acc.pending)
    if acc.dialect == "sqlite":
        who = (
            f"a user who may write the file and its folder ({acc.role} lacks "
            f"{acc.missing_migrate[0]})"
            if acc.missing_migrate
            else "a user who may write the file (read commands never change the schema)"
        )
        return PrivilegeError(
            f"{acc.where}: the tool's tables are {n} migration(s) behind "
            f"({', '.join(acc.pending)}); run `followup migrate` as {who}"
        )
    what = (
        f"{acc.where} has no follow-up tables yet"
        if acc.fresh
        else f"the schema is {n} migration(s) behind ({', '.join(acc.pending)})"
    )
    return PrivilegeError(
        f"{what}; run `followup migrate` as a role with CREATE on {acc.where} "
        f"that owns the tool's tables (role {acc.role} lacks {acc.missing_migrate[0]})"
    )


def require(acc: Access, need: str) -> None:
    """Raise the exit-2 line when the role lacks what ``need`` takes."""
    if acc.missing_read:
        raise PrivilegeError(f"{acc.where}: {_lacks(acc, acc.missing_read)}; {_fix(acc, 'reader')}")
    if need == WRITE and acc.missing_write:
        raise PrivilegeError(f"{acc.where}: {_lacks(acc, acc.missing_write)}; {_fix(acc, '')}")
    if need == MIGRATE and acc.pending and acc.missing_migrate:
        fix = (
            f"give {acc.role} write access"
            if acc.dialect == "sqlite"
            else "run it as the tables' owner (a role with CREATE on the schema)"
        )
        raise PrivilegeError(
            f"{acc.where}: {_lacks(acc, acc.missing_migrate)}, which `followup migrate` "
            f"needs for {len(acc.pending)} pending migration(s); {fix}"
        )


def open_for(db: str, lead_table: str, need: str) -> SqlStore:
    """Open the store for what a command needs (``READ``, ``REPORT``, ``WRITE``,
    ``MIGRATE``), checked up front; the store's ``access`` says what the role may do.
    A ``WRITE`` brings a schema that is behind up to date when the role may."""
    from . import open_store

    readonly = need == READ or (need == REPORT and _sqlite_readonly(db))
    store = open_store(db, lead_table, migrate=False, readonly=readonly)
    try:
        acc = probe(store)
        require(acc, need)
        store.lead_columns()  # the right database: it holds the lead table
        if need == WRITE and acc.pending:
            if not acc.may_migrate:
                raise behind_error(acc)
            store.migrate()
            acc = probe(store)
            require(acc, need)
        if need == READ and acc.dialect == "postgres" and not acc.pending:
            # belt and braces: a read command cannot write, whatever the role may
            store.execute(store.q("session_read_only"))
        store.access = acc  # type: ignore[attr-defined]
    except BaseException:
        store.close()
        raise
    return store


def _sqlite_readonly(db: str) -> bool:
    """A SQLite store this user may not write (report then reads it ``mode=ro``)."""
    url = db.strip()
    if "://" in url and not url.startswith("sqlite://"):
        return False
    path = Path(url[len("sqlite:///") :] if url.startswith("sqlite:///") else url)
    folder = path.resolve().parent
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK))


def access_of(store: SqlStore) -> Access:
    acc = getattr(store, "access", None)
    if acc is None:
        acc = probe(store)
        store.access = acc  # type: ignore[attr-defined]
    return acc


@contextmanager
def reading(store: SqlStore) -> Iterator[None]:
    """A read command's body: as it is when the schema is current; when it is missing or
    behind, inside a transaction rolled back at the end (the tables exist only there) if the
    role may create them (SQLite read-only: a fresh store's tables in TEMP); else exit 2
    telling to run ``followup migrate``."""
    acc = access_of(store)
    if not acc.pending:
        yield
        return
    readonly_sqlite = acc.dialect == "sqlite" and getattr(store, "readonly", False)
    if (readonly_sqlite and not acc.fresh) or (not readonly_sqlite and not acc.may_migrate):
        raise behind_error(acc)
    with store.scratch():
        yield


__all__ = [
    "READ",
    "REPORT",
    "WRITE",
    "MIGRATE",
    "Access",
    "access_of",
    "behind_error",
    "open_for",
    "probe",
    "reading",
    "require",
    "tool_relations",
]
