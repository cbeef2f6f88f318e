"""The lead store from the tool's side: create it, load it from CSV, check it.

The lead table belongs to the host application; the tool only reads it. For a user who
has none yet (after the demo, before the host app is wired in) ``followup leads init``
creates one with the columns below, ``followup leads import FILE.csv`` upserts rows into a
SQLite one (with sqlite-utils: ``leadimport.py``), and ``followup leads check`` says what a
run would trip on in any store: a missing table or column, rows the run would skip, the
missing index.

The columns are defined once, here; the demo seeds its store with the same DDL, and every
CSV row is validated with ``models.parse_lead``, the parser the run itself uses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .errors import StoreConfigError
from .leadcolumns import COLUMNS, OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from .models import BadLead, parse_lead, printable
from .store import sqlite_path
from .store.base import SqlStore
from .store.queries import definitions, ident
from .store.queries import q as named_query

INDEX_NAME = "{table}_account_id_id"
INTEGER_COLUMNS = ("score",)


def lead_table_ddl(dialect: str, table: str = "leads") -> list[str]:
    """CREATE TABLE and the recommended index, for ``sqlite`` or ``postgres``."""
    cols = definitions(
        [(c.name, c.postgres if dialect == "postgres" else c.sqlite) for c in COLUMNS]
    )
    index = INDEX_NAME.format(table=table.replace(".", "_"))
    leads = ident(table)
    return [
        named_query("lead_table_create", dialect, leads=leads, columns=cols),
        named_query("lead_table_index", dialect, index=ident(index), leads=leads),
    ]


# ------------------------------------------------------------------------ init


@dataclass
class InitResult:
    where: str
    table: str
    created_file: bool = False
    created_table: bool = False
    created_index: bool = False
    rows: int = 0
    migrations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.created_file:
            out.append(f"{self.where}: new SQLite database")
        if self.created_table:
            out.append(f"{self.where}: created lead table {self.table!r} (empty)")
        else:
            out.append(f"{self.where}: lead table {self.table!r} exists ({self.rows} rows), kept")
        index = INDEX_NAME.format(table=self.table.replace(".", "_"))
        out.append(
            f"{self.where}: created index {index} (account_id, id)"
            if self.created_index
            else f"{self.where}: index on (account_id, id) present"
        )
        if self.migrations:
            out.append(f"{self.where}: the tool's tables: applied {', '.join(self.migrations)}")
        return out


def init_lead_store(url: str, table: str = "leads") -> InitResult:
    """Create the lead table and its index (a new SQLite file, or an existing Postgres
    database), then the tool's own tables. Running it again changes nothing."""
    from .store import open_store

    path = sqlite_path(url)
    created_file = False
    if path is not None:
        if not path.parent.exists():
            raise StoreConfigError(
                f"{path}: the folder {path.parent} does not exist; create it or pass another --db"
            )
        from .files import create_private

        created_file = create_private(path)  # 0600: SQLite gives -wal and -shm its mode
        try:
            conn = sqlite3.connect(path)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            if created_file:
                # Write the database header now: a zero-byte file is not a lead store for
                # every other command (open_store refuses it rather than rewrite it).
                conn.execute("PRAGMA journal_mode=WAL")
            conn.close()
        except sqlite3.DatabaseError as exc:
            if created_file:
                path.unlink(missing_ok=True)
            raise StoreConfigError(f"{path}: not a usable SQLite database ({exc})") from None
    store = open_store(url, table, migrate=False)
    try:
        result = InitResult(store.describe(), table, created_file=created_file)
        existing = store._table_columns(table)
        had_table = existing is not None
        if existing is not None:
            _refuse_missing_columns(store, table, existing)
        had_index = had_table and has_lead_index(store)
        with store.transaction():
            for stmt in lead_table_ddl(store.dialect, table):
                if had_table and stmt.startswith("CREATE INDEX") and had_index:
                    continue
                store.execute(stmt)
        store._lead_columns = None
        store.lead_columns()  # a pre-existing table must still have the required columns
        result.created_table = not had_table
        result.created_index = not had_index
        result.rows = int(store.query(store.q("lead_count", leads=ident(table)))[0]["n"])
        result.migrations = store.migrate()
    finally:
        store.close()
    return result


def _refuse_missing_columns(store: SqlStore, table: str, columns: tuple[str, ...]) -> None:
    """The host's existing table is kept as it is: one that lacks a required column is
    refused, naming the column and the statement that adds it (before any index on it)."""
    missing = [c for c in COLUMNS if c.name in REQUIRED_LEAD_COLUMNS and c.name not in columns]
    if not missing:
        return
    names = ", ".join(c.name for c in missing)
    adds = "; ".join(
        f"ALTER TABLE {table} ADD COLUMN {c.name} "
        f"{(c.postgres if store.dialect == 'postgres' else c.sqlite).replace(' PRIMARY KEY', '')}"
        for c in missing
    )
    raise StoreConfigError(
        f"{store.describe()}: the existing lead table {table!r} lacks column(s) {names}, which "
        f"a run needs; add and fill them ({adds}), or point settings.lead_table at a table or "
        "view that has them"
    )


def has_lead_index(store: SqlStore) -> bool | None:
    """Whether an index on the lead table starts with (account_id, id); None for a view."""
    table = store.lead_table
    if store.dialect == "sqlite":
        kind = store.query(store.q("lead_table_kind"), {"t": table})
        if kind and kind[0]["type"] == "view":
            return None
        for ix in store.query(store.q("index_list"), {"t": table}):
            cols = [r["name"] for r in store.query(store.q("index_columns"), {"i": ix["name"]})]
            if cols[:2] == ["account_id", "id"]:
                return True
        return False
    rows = store.query(store.q("lead_table_kind"), {"t": table})
    if rows and rows[0]["kind"] in ("v", "m"):
        return None if rows[0]["kind"] == "v" else _pg_index(store, table)
    return _pg_index(store, table)


def _pg_index(store: SqlStore, table: str) -> bool:
    rows = store.query(store.q("index_column_lists"), {"t": table})
    return any(list(r["cols"])[:2] == ["account_id", "id"] for r in rows)


# ----------------------------------------------------------------------- check


@dataclass
class CheckResult:
    where: str
    table: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    rows: int = 0
    missing_optional: list[str] = field(default_factory=list)
    index: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and not self.bad_rows

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def check_lead_store(
    store: SqlStore, limit_bad: int = 1000, accounts: Collection[str] | None = None
) -> CheckResult:
    """Everything a run would trip on in the lead store, without changing it; with the
    configured ``accounts``, also the rows no account serves: an account id with blanks
    around a configured one is a row a run skips unnamed (it reads each account's own
    rows), other accounts' rows are counted in a warning (a host may hold those)."""
    table = store.lead_table
    result = CheckResult(store.describe(), table)
    cols = store._table_columns(table)
    if cols is None:
        result.errors.append(
            f"{result.where}: no table or view {table!r}; create it with `followup leads init` "
            "or set settings.lead_table in sequences.yaml"
        )
        return result
    missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in cols]
    if missing:
        result.errors.append(
            f"{result.where}: table {table!r} lacks required column(s) {', '.join(missing)}; "
            "add them (`followup leads init` shows the columns on a new database)"
        )
        return result
    result.missing_optional = [c for c in OPTIONAL_LEAD_COLUMNS if c not in cols]
    if result.missing_optional:
        result.warnings.append(
            f"{result.where}: table {table!r} has no {', '.join(result.missing_optional)} "
            "(optional: read as empty)"
        )
    result.index = has_lead_index(store)
    index = INDEX_NAME.format(table=table.replace(".", "_"))
    if result.index is False:
        result.warnings.append(
            f"{result.where}: no index on {table} (account_id, id); a run pages candidates by "
            f"it: CREATE INDEX {index} ON {table} (account_id, id);"
        )
    parts = {"select": store._select_list(), "leads": ident(table)}
    others: dict[str, int] = {}  # account id -> rows, of accounts the config does not have
    after: str | None = None
    while True:
        name = "lead_check_first_page" if after is None else "lead_check_page"
        page = store.query(store.q(name, **parts), {"after": after})
        for row in page:
            result.rows += 1
            try:
                lead = parse_lead(row)
            except BadLead as exc:
                if len(result.bad_rows) < limit_bad:
                    result.bad_rows.append(str(exc))
                continue
            if accounts is not None and lead.account_id not in accounts:
                padded = lead.account_id is not None and lead.account_id.strip() in accounts
                if padded and len(result.bad_rows) < limit_bad:
                    result.bad_rows.append(
                        f"lead {lead.id}: account_id: {lead.account_id!r} has blanks around it: "
                        "no account is configured so and a run never serves the row; trim it"
                    )
                elif not padded:
                    others[str(lead.account_id)] = others.get(str(lead.account_id), 0) + 1
        if len(page) < 1000:
            break
        after = str(page[-1]["id"])
    if others:
        top = sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))
        named = ", ".join(f"{printable(a, 40)!r} ({n})" for a, n in top[:5])
        more = f" and {len(top) - 5} more" if len(top) > 5 else ""
        result.warnings.append(
            f"{result.where}: {sum(others.values())} rows of accounts not in the config "
            f"(never served): {named}{more}"
        )
    return result
