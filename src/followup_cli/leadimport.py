"""``followup leads import FILE.csv``: CSV rows upserted by ``id`` into a SQLite lead store
(sqlite-utils), each row validated with ``models.parse_lead``, the parser the run uses; a
bad line is named with its line number and the fix, the good ones are in."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreConfigError
from .leadcolumns import COLUMN_NAMES, OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from .models import BadLead, parse_lead
from .store import sqlite_path
from .store.queries import ident, placeholders
from .store.queries import q as named_query


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
