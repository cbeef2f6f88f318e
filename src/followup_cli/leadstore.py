"""The lead store from the tool's side: create it, load it from CSV, check it.

The lead table belongs to the host application; the tool only reads it. For a user who
has none yet (after the demo, before the host app is wired in) ``followup leads init``
creates one with the columns below, ``followup leads import FILE.csv`` upserts rows into a
SQLite one (with sqlite-utils), and ``followup leads check`` says what a run would trip on
in any store: a missing table or column, rows the run would skip, the missing index.

The columns are defined once, here; the demo seeds its store with the same DDL, and every
CSV row is validated with ``models.parse_lead``, the parser the run itself uses.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreConfigError
from .leadcolumns import COLUMN_NAMES, COLUMNS, OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from .models import BadLead, parse_lead, printable
from .store import sqlite_path
from .store.base import SqlStore
from .store.queries import definitions, ident, placeholders
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


# ---------------------------------------------------------------------- import


@dataclass
class ImportResult:
    source: str
    target: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_csv_leads(text: str, name: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, row, problem) per CSV record: the row as the store will hold it, validated
    with the run's own parser; ``problem`` names the column and the fix when it is bad."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = _csv_step(reader, name, lambda: reader.fieldnames)
    if not header:
        raise ConfigError(f"{name}: empty file; the first line must name the columns")
    header = [h.strip() for h in header]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in header]
    if missing:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
            hint = "; the file is not comma-separated: save it as CSV with commas"
        raise ConfigError(
            f"{name}:1: missing column(s) {', '.join(missing)}; the header needs "
            f"{', '.join(REQUIRED_LEAD_COLUMNS)} (optional: {', '.join(OPTIONAL_LEAD_COLUMNS)})"
            + hint
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ConfigError(f"{name}:1: column(s) named twice: {', '.join(dup)}")
    while (record := _csv_step(reader, name, lambda: next(reader, None))) is not None:
        # the record's first line: blank lines before it are skipped, a quoted value may
        # hold line breaks of its own
        values = [v for v in record.values() if isinstance(v, str)]
        values += [x for v in record.values() if isinstance(v, list) for x in v]
        line = reader.line_num - sum(v.count("\n") for v in values)
        if None in record:
            yield line, None, f"{len(header)} columns in the header, more values on this line"
            continue
        row: dict[str, Any] = {}
        for col in COLUMN_NAMES:
            if col not in record:
                continue
            value = record[col]
            value = value.strip() if isinstance(value, str) else value
            row[col] = value if value not in ("", None) else None
        if all(v is None for v in row.values()):
            continue  # a blank line
        try:
            lead = parse_lead(row)
        except BadLead as exc:
            yield line, None, f"lead {exc.lead_id}: {exc.column}: {exc.what}"
            continue
        if lead.score is not None:
            row["score"] = lead.score
        if row.get("attributes") is not None:
            row["attributes"] = json.dumps(lead.attributes, ensure_ascii=False)
        yield line, row, None


# A field may hold a last message or attributes up to a million characters (README); csv's
# default limit (131,072) made such a file an unexpected error.
FIELD_LIMIT = 4_000_000


def _csv_step(reader: Any, name: str, step: Any) -> Any:
    """One step of a csv reader: its errors (a field beyond the limit) named with the line."""
    old = csv.field_size_limit(FIELD_LIMIT)
    try:
        return step()
    except csv.Error as exc:
        raise ConfigError(f"{name}:{reader.line_num + 1}: not a CSV line ({exc})") from None
    finally:
        csv.field_size_limit(old)


def import_csv(source: str, text: str, url: str, table: str = "leads") -> ImportResult:
    """Upsert a CSV's valid rows into a SQLite lead table (sqlite-utils), by ``id``.

    Every row is checked with the run's parser first; a bad line is named (line number and
    reason) and left out, the others go in. Importing the same file twice changes nothing.
    """
    import sqlite_utils

    path = _import_target(url)
    result = ImportResult(source, str(path))
    rows = _valid_rows(source, text, result)
    result.rows = len(rows)
    db = sqlite_utils.Database(path)
    try:
        cols = _table_columns(db, path, table, url)
        existing = _existing_rows(db, table, list(rows))
        changed = _changed_rows(rows, existing, cols, result)
        with db.conn:
            db[table].upsert_all(changed, pk="id", alter=False)
    finally:
        db.close()
    return result


def _import_target(url: str) -> Path:
    """The SQLite file ``url`` names; an error with the fix for Postgres or a missing file."""
    path = sqlite_path(url)
    if path is None:
        raise ConfigError(
            f"{url}: `followup leads import` loads SQLite lead stores; on Postgres the host "
            "app owns the table (load it with COPY leads FROM ... CSV HEADER, then run "
            "`followup leads check`)"
        )
    if not path.exists():
        raise StoreConfigError(
            f"{path}: no such database file; create it first with `followup leads init --db {url}`"
        )
    return path


def _valid_rows(source: str, text: str, result: ImportResult) -> dict[str, dict[str, Any]]:
    """The rows that parse, by lead id (a later line wins); the columns the table does not
    know, the rejected lines and the duplicates noted in ``result``."""
    rows: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = [h.strip() for h in _csv_step(reader, source, lambda: next(reader, []))]
    result.ignored_columns = [h for h in header if h and h not in COLUMN_NAMES]
    for line, row, problem in read_csv_leads(text, source):
        if problem is not None:
            result.rejected.append(f"{source}:{line}: {problem}")
            continue
        assert row is not None
        lid = str(row["id"])
        if lid in rows:
            result.duplicates.append(
                f"{source}:{line}: lead {lid} also on line {first_line[lid]}; the later line wins"
            )
        else:
            first_line[lid] = line
        rows[lid] = row
    return rows


def _table_columns(db: Any, path: Path, table: str, url: str) -> set[str]:
    """The lead table's columns; an error with the fix when it or a required column is
    missing."""
    if not db[table].exists():
        raise StoreConfigError(
            f"{path}: no table {table!r}; create it with `followup leads init --db {url}`"
        )
    cols = set(db[table].columns_dict)
    missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in cols]
    if missing:
        raise StoreConfigError(
            f"{path}: table {table!r} lacks column(s) {', '.join(missing)}; "
            "see `followup leads check`"
        )
    return cols


def _existing_rows(db: Any, table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The table's rows with these ids, by id (500 ids a query)."""
    existing: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        params = {f"p{n}": v for n, v in enumerate(chunk)}
        sql = named_query(
            "lead_rows_by_text_id", "sqlite", leads=ident(table), ids=placeholders(params)
        )
        for r in db.query(sql, params):
            existing[str(r["id"])] = r
    return existing


def _changed_rows(
    rows: dict[str, dict[str, Any]],
    existing: dict[str, dict[str, Any]],
    cols: set[str],
    result: ImportResult,
) -> list[dict[str, Any]]:
    """The rows to upsert (new or different, in the table's columns), counted in ``result``
    as inserted, updated or unchanged."""
    changed = []
    for lid, row in rows.items():
        row = {k: v for k, v in row.items() if k in cols}
        old = existing.get(lid)
        if old is None:
            result.inserted += 1
        elif all(_same(old.get(k), v) for k, v in row.items()):
            result.unchanged += 1
            continue
        else:
            result.updated += 1
        changed.append(row)
    return changed


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return str(a) == str(b)


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
