"""Every named query of store/queries.sql compiles against the real schema of both stores
(the tool's tables after every migration, the README's lead table): a typo in a block that
no other test reaches fails here, not in production."""

from __future__ import annotations

import re

from followup_cli.auditchain import KEPT_DETAIL_ACTIONS
from followup_cli.leadcolumns import COLUMN_NAMES, COLUMNS
from followup_cli.leadstore import lead_table_ddl
from followup_cli.store import open_store, queries
from followup_cli.store.queries import (
    ALWAYS,
    columns,
    definitions,
    equals,
    ident,
    placeholders,
    value_rows,
)
from followup_cli.store.rows import SEALED_TRACKING

_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|PRAGMA)\b", re.I)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def _parts(store, name: str) -> dict[str, queries.Sql]:
    ids = store._lead_id_in if name in ("lead_rows", "lead_ids_present") else None
    fill = {
        "leads": store.leads,
        "select": store._select_list(),
        "ids": (ids(["a", "b"]) if ids else store._in_list("lead_id", ["a", "b"]))[0],
        "keys": store._in_list("lead_id", ["a", "b"])[0],
        "where": ALWAYS,
        "account": ALWAYS,
        "after": ALWAYS,
        "unchanged": ALWAYS,
        "lid": store._lid(),
        "inbound_at": store._lead_column("last_inbound_at"),
        "converted_at": store._lead_column("converted_at"),
        "status": store._lead_column("status"),
        "column": ident("converted_at"),
        "promote": store._in_list("status", ["pending"], param="f")[0],
        "values": value_rows(2, ("l", "i", "c"), ("now",)),
        "cols": columns(SEALED_TRACKING),
        "sealed": columns(SEALED_TRACKING),
        "table": ident("followup_tracking"),
        "key": ident("id"),
        "sets": equals(["status"], "new_"),
        "slot": ident("slot"),
        "kept": store._in_list("action", KEPT_DETAIL_ACTIONS, param="kept")[0],
        "only": ALWAYS,
        "which": ALWAYS,
        "meaning": columns(["lead_id", "status"]),
        "lead_range": ALWAYS,
        "enrollment_range": ALWAYS,
        "score": store._lead_column("score"),
        "last_inbound_at": store._lead_column("last_inbound_at"),
        "keyword": ALWAYS,
        "rows": ALWAYS,
        "enrolled_due": ALWAYS,
        "new_due": ALWAYS,
        "odd_score": ALWAYS,
    }
    if name == "leads_insert":
        fill.update(columns=columns(COLUMN_NAMES), values=placeholders(COLUMN_NAMES))
    if name == "claim_insert":
        fill.update(cols=columns(SEALED_TRACKING), values=placeholders(list(SEALED_TRACKING)))
    if name == "claims_insert":
        fill.update(cols=columns(SEALED_TRACKING), values=value_rows(2, SEALED_TRACKING))
    if name == "lead_table_create":
        types = [(c.name, c.postgres if store.dialect == "postgres" else c.sqlite) for c in COLUMNS]
        fill.update(columns=definitions(types))
    if name == "lead_table_index":
        fill.update(index=ident("leads_account_id_id"))
    if name == "enrollments_start":
        fill.update(values=value_rows(2, ("l", "s", "a", "anchor", "p"), ("now", "h")))
    return {p: fill[p] for p in queries.parts(name, store.dialect)}


def test_named_queries__every_statement_compiles_on_the_real_schema(db):
    store = open_store(db.url)
    try:
        store.lead_columns()
        checked: list[str] = []
        for name in queries.names(store.dialect):
            sql = store.q(name, **_parts(store, name))
            if not _STATEMENT.match(sql) or (store.dialect == "postgres" and "PRAGMA" in sql):
                continue  # a fragment, or SET / VACUUM (not explainable)
            params = {p: None for p in _PARAM.findall(sql)}
            params.update({p: [] for p in re.findall(r"ANY\(:(\w+)\)", sql)})
            with store.transaction():
                store.query("EXPLAIN " + sql, params)
            checked.append(name)
        assert len(checked) > 50
        # what the tool knows of a chunk of leads and of persons (store/lead_states.py)
        for name in ("lead_state_followups", "lead_state_enrollments", "lead_state_optouts"):
            assert name in checked
        for name in ("person_state_followups", "person_state_enrollments"):
            assert name in checked
        assert "person_state_suppressions" in checked
    finally:
        store.close()


def test_named_queries__the_lead_table_ddl_makes_the_contract_table(db):
    """``leads init``'s, the demo's and the in-memory store's DDL (named blocks
    ``lead_table_create``, ``lead_table_index``) runs on both stores and makes a table with
    every lead column."""
    store = open_store(db.url)
    try:
        ddl = lead_table_ddl(store.dialect, "ddl_probe")
        assert ddl[0].startswith('CREATE TABLE IF NOT EXISTS "ddl_probe" (\n  id TEXT PRIMARY KEY,')
        assert ddl[1] == (
            'CREATE INDEX IF NOT EXISTS "ddl_probe_account_id_id" ON "ddl_probe" (account_id, id)'
        )
        with store.transaction():
            for statement in ddl:
                store.execute(statement)
        insert = (
            f'INSERT INTO "ddl_probe" ({columns(COLUMN_NAMES)}) '
            f"VALUES ({placeholders(COLUMN_NAMES)})"
        )
        with store.transaction():
            store.execute(insert, {c: None for c in COLUMN_NAMES} | {"id": "l1"})
        assert [r["id"] for r in store.query('SELECT id FROM "ddl_probe"')] == ["l1"]
        with store.transaction():
            store.execute('DROP TABLE "ddl_probe"')
    finally:
        store.close()
