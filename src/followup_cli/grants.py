"""The SQL that gives two Postgres roles what the tool needs, and no more (issue 9):

* a **runner** (cron: ``followup run``, opt-outs, erasures, events): USAGE on the schema,
  SELECT on the lead table, SELECT/INSERT/UPDATE/DELETE on the tool's tables (SELECT only
  on ``followup_migrations`` and the views; no DELETE on the audit log and its head),
  USAGE/SELECT on their sequences; no CREATE, so it never changes the schema;
* a **reader** (dashboards: report, audit, status, leads list, dry runs): USAGE on the
  schema and SELECT on the lead table and the tool's tables and views.

The owner of the tables (who runs ``followup migrate``) applies it; ALTER DEFAULT
PRIVILEGES covers the tables a later ``followup migrate`` by that owner creates.
Identifiers are quoted by psycopg (``sql.Identifier``), never pasted in.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from .store.access import APPEND_ONLY, MIGRATIONS_TABLE, tool_relations

DML = "SELECT, INSERT, UPDATE, DELETE"


def _name(schema: str, table: str) -> sql.Identifier:
    """``schema.table``; a lead table written ``other.table`` keeps its own schema."""
    if "." in table:
        return sql.Identifier(*table.split(".", 1))
    return sql.Identifier(schema, table)


def grant_statements(
    schema: str, lead_table: str, runner: str | None = None, reader: str | None = None
) -> list[tuple[str, sql.Composable]]:
    """(comment, statement) pairs: the runner's grants, then the reader's."""
    tables, views, seqs = tool_relations()
    sch = sql.Identifier(schema)
    out: list[tuple[str, sql.Composable]] = []
    lead_schema = lead_table.split(".", 1)[0] if "." in lead_table else None
    for role, kind in ((runner, "runner"), (reader, "reader")):
        if not role:
            continue
        r = sql.Identifier(role)
        usage = sql.SQL("GRANT USAGE ON SCHEMA {} TO {}")
        out.append((f"{kind} {role}", usage.format(sch, r)))
        if lead_schema and lead_schema != schema:
            out.append(("", usage.format(sql.Identifier(lead_schema), r)))
        out.append(("", sql.SQL("GRANT SELECT ON {} TO {}").format(_name(schema, lead_table), r)))
        if kind == "runner":
            out += _runner_grants(schema, r, tables, views, seqs)
        else:
            out += _reader_grants(schema, r, tables, views)
    return out


def _ids(schema: str, names: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(_name(schema, n) for n in names)


def _runner_grants(
    schema: str, r: sql.Identifier, tables: list[str], views: list[str], seqs: list[str]
) -> list[tuple[str, sql.Composable]]:
    """The runner's: read and write the tool's tables (the audit log append-only), read
    the migrations and views, use the sequences; the same on tables made later."""
    dml = [t for t in tables if t != MIGRATIONS_TABLE and t not in APPEND_ONLY]
    append_only = [t for t in tables if t in APPEND_ONLY]
    read_only = [MIGRATIONS_TABLE, *views]
    sch = sql.Identifier(schema)
    return [
        ("", sql.SQL("GRANT SELECT ON {} TO {}").format(_ids(schema, read_only), r)),
        ("", sql.SQL("GRANT " + DML + " ON {} TO {}").format(_ids(schema, dml), r)),
        (
            "",
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON {} TO {}").format(
                _ids(schema, append_only), r
            ),
        ),
        ("", sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(_ids(schema, seqs), r)),
        (
            "",
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT " + DML + " ON TABLES TO {}"
            ).format(sch, r),
        ),
        (
            "",
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(sch, r),
        ),
    ]


def _reader_grants(
    schema: str, r: sql.Identifier, tables: list[str], views: list[str]
) -> list[tuple[str, sql.Composable]]:
    """The reader's: read every table and view of the tool's, and those made later."""
    return [
        ("", sql.SQL("GRANT SELECT ON {} TO {}").format(_ids(schema, [*tables, *views]), r)),
        (
            "",
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                sql.Identifier(schema), r
            ),
        ),
    ]


def grants_sql(
    conn: Any, schema: str, lead_table: str, runner: str | None = None, reader: str | None = None
) -> str:
    """The statements as one SQL script (``conn``: a psycopg connection, for quoting)."""
    lines = [
        f"-- followup: least-privilege roles for schema {schema}; run as the owner of the "
        "tool's tables, after `followup migrate`",
    ]
    notes = {
        "runner": "runs, opt-outs, erasures, events: reads and writes rows, never the schema",
        "reader": "report, audit, status, leads list, dry runs: SELECT only",
    }
    for comment, stmt in grant_statements(schema, lead_table, runner, reader):
        if comment:
            kind = comment.split(" ", 1)[0]
            lines.append(f"-- {comment}: {notes[kind]}")
        lines.append(stmt.as_string(conn) + ";")
    return "\n".join(lines) + "\n"


def sqlite_line(path: str) -> str:
    """SQLite has no roles: what stands for them is the file's mode."""
    return (
        f"-- {path}: SQLite has no roles; the runner's OS user needs read and write access to "
        "the file and its folder (journal, run lock), a reader read access to the file only "
        "(e.g. chown runner:readers, chmod 0640 the file, 0750 the folder)"
    )


__all__ = ["grant_statements", "grants_sql", "sqlite_line"]
