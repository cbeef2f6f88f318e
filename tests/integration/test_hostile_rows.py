"""Rows are isolated: no value in a lead row stops the run for the others.

Property-based (Hypothesis): hostile rows (impossible dates, dates that overflow once
hours are added, non-numeric or huge scores, JSON of the wrong shape or nested too deeply,
bytes that are not UTF-8, runaway texts, NULLs, wrong types in a column) are inserted
beside good leads on SQLite and on Postgres; the run must serve every good lead, name
every bad one, send nothing to it, and never end in an exception. Candidate pages are cut
to two rows so that hostile ids are paged over, not only read.

Bounded: few examples, no deadline, derandomized (the same examples on every run).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from followup_cli import accountplan
from followup_cli.channels import make_channel
from followup_cli.clock import Clock
from followup_cli.config import load_config
from followup_cli.engine import Engine, RunOptions
from followup_cli.store import open_store
from tests.helpers import PG_BASE, base_config, followup, pg_available, write_config

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 11:00 in Madrid: outside quiet hours
INBOUND = (NOW - timedelta(hours=5)).isoformat()
OUTBOUND = (NOW - timedelta(hours=4)).isoformat()  # m1 (3 h) was due an hour ago
GOOD = ("good_a", "good_m", "good_z")
COLUMNS = (
    "id", "account_id", "user_id", "conversation_id", "recipient_id", "username",
    "first_name", "score", "status", "last_inbound_at", "last_inbound_text",
    "last_outbound_at", "converted_at", "timezone", "attributes",
)  # fmt: skip
PROPERTY = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class NotUtf8:
    """Bytes stored as TEXT (``CAST(x AS TEXT)``): SQLite keeps them, Python cannot decode."""

    raw: bytes


def due_row(lead_id: Any, **over: Any) -> dict[str, Any]:
    row = {
        "id": lead_id,
        "account_id": "acct_a",
        "user_id": "u_1",
        "conversation_id": f"conv_{lead_id}",
        "recipient_id": f"ig_{lead_id}",
        "username": f"user_{lead_id}",
        "first_name": "Ana",
        "score": 4,
        "status": "qualified",
        "last_inbound_at": INBOUND,
        "last_inbound_text": "how much?",
        "last_outbound_at": OUTBOUND,
        "converted_at": None,
        "timezone": "Europe/Madrid",
        "attributes": '{"interest": "pricing"}',
    }
    row.update(over)
    return row


# ------------------------------------------------------------------ the two stores


@contextmanager
def fresh_store(backend: str) -> Iterator[tuple[str, Any]]:
    """(url, insert function) for an empty lead table the way a sloppy host app keeps it:
    no primary key, and on SQLite no type a value must obey."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "leads.db")
            conn = sqlite3.connect(path)
            conn.execute(
                "CREATE TABLE leads (id TEXT, account_id TEXT, user_id TEXT, conversation_id "
                "TEXT, recipient_id TEXT, username TEXT, first_name TEXT, score INTEGER, status "
                "TEXT, last_inbound_at TEXT, last_inbound_text TEXT, last_outbound_at TEXT, "
                "converted_at TEXT, timezone TEXT, attributes TEXT)"
            )
            conn.commit()

            def insert(rows: list[dict[str, Any]]) -> None:
                for row in rows:
                    marks = ", ".join(
                        "CAST(? AS TEXT)" if isinstance(row[c], NotUtf8) else "?" for c in COLUMNS
                    )
                    values = [
                        row[c].raw if isinstance(row[c], NotUtf8) else row[c] for c in COLUMNS
                    ]
                    conn.execute(
                        f"INSERT INTO leads ({', '.join(COLUMNS)}) VALUES ({marks})", values
                    )
                conn.commit()

            try:
                yield path, insert
            finally:
                conn.close()
        return
    import psycopg

    schema = "h_" + uuid.uuid4().hex[:12]
    conn = psycopg.connect(PG_BASE, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.leads (id TEXT, account_id TEXT, user_id TEXT, "
        "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, score NUMERIC, "
        "status TEXT, last_inbound_at TIMESTAMPTZ, last_inbound_text TEXT, last_outbound_at "
        "TIMESTAMPTZ, converted_at TIMESTAMPTZ, timezone TEXT, attributes JSONB)"
    )

    def insert_pg(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            casts = ", ".join(
                "%s::numeric" if c == "score" else "%s::jsonb" if c == "attributes" else "%s"
                for c in COLUMNS
            )
            values = [None if row[c] is None else str(row[c]) for c in COLUMNS]
            conn.execute(
                f"INSERT INTO {schema}.leads ({', '.join(COLUMNS)}) VALUES ({casts})", values
            )

    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}", insert_pg
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def needs(backend: str) -> None:
    if backend == "postgres":
        why = pg_available()
        if why:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true and {why}: the Postgres half must run on CI")
            pytest.skip(why)


# ------------------------------------------------------------------ hostile values

DEEP_JSON = "[" * 5000 + "]" * 5000
# (column, value) pairs that are garbage and reach the rules (the SQL prefilter keeps them):
# each must be named, and its lead never messaged.
SQLITE_BAD = [
    ("last_outbound_at", "9999-12-31T23:59:59Z"),  # every run exited 1 (OverflowError)
    ("last_outbound_at", "0001-01-01T00:00:00Z"),  # Go's zero time
    ("last_outbound_at", "yesterday"),
    ("last_outbound_at", 1772445600),  # an epoch number, not ISO 8601
    ("last_outbound_at", b"\x00\xff"),
    ("last_inbound_at", "0001-01-01T00:00:00Z"),
    ("last_inbound_at", "2026-13-45T99:00:00Z"),
    ("converted_at", "soon"),  # the prefilter's "IS NULL" left these out unnamed
    ("converted_at", "9999-12-31"),
    ("converted_at", 1772445600),
    ("score", "four"),  # text in an INTEGER column
    ("score", 4.5),
    ("score", 1e23),  # a REAL beyond 64 bits, out of the score range: was dropped unnamed
    ("score", 7.5),  # not an integer, and out of range: garbage all the same
    ("score", float("inf")),
    ("score", b"\x04"),
    ("attributes", "[1, 2]"),
    ("attributes", "{not json"),
    ("attributes", DEEP_JSON),
    ("attributes", NotUtf8(b'{"a": "\xff"}')),
    ("recipient_id", None),
    ("recipient_id", "   "),
    ("first_name", NotUtf8(b"Ana\xff")),
    ("first_name", "A\x00na"),  # a NUL byte: was rendered into the message and sent
    ("recipient_id", "ig_\x00x"),  # was sent to, NUL and all
    ("attributes", '{"interest": "pri\\u0000cing"}'),  # a NUL once decoded
    ("username", "u" * 5000),
    ("status", b"\xff\xfe"),
    ("timezone", "Mars/Olympus_Mons"),
    ("timezone", "../../etc/passwd"),
    ("last_inbound_text", NotUtf8(b"stop\xc3")),
    ("id", NotUtf8(b"\xffbad_id")),
    ("id", b"blob_id"),
    ("id", "nul\x00id"),
    ("id", ""),
    ("id", None),
]
PG_BAD = [
    ("last_outbound_at", "infinity"),
    ("last_outbound_at", "20000-01-01T00:00:00Z"),  # after year 9999: Python cannot hold it
    ("last_outbound_at", "9999-12-31T23:59:59Z"),
    ("last_outbound_at", "0800-01-01T00:00:00Z"),
    ("last_outbound_at", "4000-01-01 BC"),
    ("last_inbound_at", "-infinity"),
    ("last_inbound_at", "1066-10-14T12:00:00Z"),
    ("converted_at", "infinity"),  # the prefilter's "IS NULL" left these out unnamed
    ("converted_at", "0800-01-01T00:00:00Z"),
    ("score", "4.5"),
    ("score", "1e23"),  # integral, beyond 64 bits: was dropped unnamed
    ("score", "7.5"),
    ("score", "NaN"),
    ("attributes", "[1, 2]"),
    ("attributes", '"just text"'),
    ("attributes", DEEP_JSON),  # jsonb takes it; Python's json gives up at ~1000 levels
    ("recipient_id", None),
    ("recipient_id", "   "),
    ("username", "u" * 5000),
    ("timezone", "Mars/Olympus_Mons"),
    ("id", ""),
    ("id", None),
]
SOME_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | SOME_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SOME_TEXT, inner, max_size=3),
    max_leaves=8,
)
# Anything at all, for robustness only: the run must survive it and serve the good leads.
SQLITE_ANY = st.tuples(
    st.sampled_from(COLUMNS),
    st.one_of(
        st.none(),
        SOME_TEXT,
        st.text(max_size=20),  # surrogates cannot be stored: filtered below
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(),
        st.binary(max_size=12),
        st.binary(min_size=1, max_size=12).map(NotUtf8),
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        JSON_VALUES.map(json.dumps),
    ),
)
PG_TIMES = st.one_of(
    st.sampled_from(["infinity", "-infinity", "294276-12-31T23:59:59Z", "4713-01-01 BC"]),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
)
PG_ANY = st.one_of(
    st.tuples(
        st.sampled_from(
            [c for c in COLUMNS if c not in ("score", "attributes") and "_at" not in c]
        ),
        st.none() | SOME_TEXT,
    ),
    st.tuples(
        st.sampled_from(["last_inbound_at", "last_outbound_at", "converted_at"]),
        st.none() | PG_TIMES,
    ),
    st.tuples(
        st.just("score"),
        st.none()
        | st.sampled_from(["NaN", "1e100", "-0", "4.000", "6.0000001"])
        | st.integers(min_value=-(10**30), max_value=10**30),
    ),
    st.tuples(st.just("attributes"), st.none() | JSON_VALUES.map(json.dumps)),
)


def storable(backend: str, column: str, value: Any) -> bool:
    if backend == "sqlite":
        return not (isinstance(value, str) and any(0xD800 <= ord(ch) <= 0xDFFF for ch in value))
    return True


def hostile_rows(pairs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, (column, value) in enumerate(pairs):
        # No inbound unless that is the hostile column: an old or broken last_outbound_at
        # then still reaches the rules (a lead who wrote last is not a candidate at all).
        rows.append(due_row(f"h{i:02d}", **{"last_inbound_at": None, column: value}))
    return rows


# ------------------------------------------------------------------ running it


def run_engine(url: str, tmp: Path) -> Any:
    cfg = write_config(tmp / "sequences.yaml", base_config())
    loaded = load_config(cfg)
    store = open_store(url)
    try:
        channel = make_channel(loaded.config, stream=io.StringIO())
        return Engine(loaded, store, channel, Clock(fixed=NOW)).run(RunOptions(now=NOW))
    finally:
        store.close()


def sent_ids(url: str) -> set[str]:
    store = open_store(url)
    try:
        return {r["lead_id"] for r in store.followups() if r["status"] == "sent"}
    finally:
        store.close()


def check_run(backend: str, pairs: list[tuple[str, Any]], must_name: bool) -> None:
    rows = [due_row(g) for g in GOOD] + hostile_rows(pairs)
    ids = [r["id"] for r in rows]
    assume(len(set(map(repr, ids))) == len(ids))  # no hostile id that repeats another
    with fresh_store(backend) as (url, insert), tempfile.TemporaryDirectory() as tmp:
        insert(rows)
        summary = run_engine(url, Path(tmp))  # raises nothing: the property's first half
        assert summary.exit_code == 0, summary.as_dict()
        sent = sent_ids(url)
        assert set(GOOD) <= sent, (sent, summary.as_dict()["bad_leads"])
        if must_name:
            hostile = {r["id"] for r in hostile_rows(pairs)}
            assert not (sent & hostile), "a garbage row was messaged"
            named = summary.as_dict()["bad_leads"]
            for i, (column, value) in enumerate(pairs):
                who = f"h{i:02d}"
                if column == "id":
                    assert any(
                        "id" in line and (value is None or line.startswith("lead "))
                        for line in named
                    ), (value, named)
                else:
                    assert any(line.startswith(f"lead {who}: {column}:") for line in named), (
                        column,
                        value,
                        named,
                    )


@pytest.fixture(autouse=True)
def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accountplan, "CANDIDATE_PAGE", 2)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@PROPERTY
@given(data=st.data())
def test_run__garbage_rows_are_named_and_every_good_lead_is_served(
    backend: str, data: st.DataObject
) -> None:
    needs(backend)
    corpus = SQLITE_BAD if backend == "sqlite" else PG_BAD
    pairs = data.draw(st.lists(st.sampled_from(corpus), min_size=1, max_size=5))
    check_run(backend, pairs, must_name=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@PROPERTY
@given(data=st.data())
def test_run__any_value_in_any_column_never_stops_the_run(
    backend: str, data: st.DataObject
) -> None:
    needs(backend)
    pairs = data.draw(
        st.lists(SQLITE_ANY if backend == "sqlite" else PG_ANY, min_size=1, max_size=4)
    )
    assume(all(storable(backend, c, v) for c, v in pairs))
    check_run(backend, pairs, must_name=False)


# ------------------------------------------------------------------ every command, the CLI


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cli__every_command_survives_every_garbage_row(backend: str, tmp_path: Path) -> None:
    """The installed command, with the whole corpus at once: run, dry run, explain of a bad
    lead, leads, report and handoff end with 0 (or 2 naming the row, for explain), never 1,
    never a traceback."""
    needs(backend)
    corpus = SQLITE_BAD if backend == "sqlite" else PG_BAD
    cfg = write_config(tmp_path / "sequences.yaml", base_config())
    with fresh_store(backend) as (url, insert):
        insert([due_row(g) for g in GOOD] + hostile_rows(corpus))
        common = ("--config", str(cfg), "--db", url, "--now", NOW.isoformat())
        dry = followup("run", "--dry-run", "--json", *common)
        assert dry.returncode == 0, dry.stderr
        assert {m["lead_id"] for m in json.loads(dry.stdout)["messages"]} == set(GOOD)
        r = followup("run", "--json", *common)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["sent"] == len(GOOD)
        assert "Traceback" not in r.stderr
        assert len(summary["bad_leads"]) == len(corpus)  # the NULL id: one count line
        assert "lead h00: last_outbound_at: out of range" in r.stderr
        check = followup("sequences", "check", "--config", str(cfg), "--db", url)
        assert check.returncode == 0, check.stderr  # samples the garbage rows, skips them
        bad = followup("explain", "h00", *common)
        assert bad.returncode == 2 and "last_outbound_at" in bad.stderr, bad.stderr
        for cmd in (["leads"], ["report", "--format", "json"], ["handoff"], ["run"]):
            out = followup(*cmd, *common)
            assert out.returncode == 0, (cmd, out.stderr)
            assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
        # A lead that was messaged turns to garbage: the reconcile of outcomes (every run,
        # every report) reads it again and must not stop either.
        later = (NOW + timedelta(hours=2)).isoformat()
        spoiled = {"last_inbound_at": "infinity", "converted_at": "-infinity"}
        if backend == "sqlite":
            spoiled = {"last_inbound_at": NotUtf8(b"\xff"), "converted_at": "9999-12-31"}
        update(backend, url, "good_a", spoiled)
        for cmd in (["run"], ["report", "--format", "json"], ["leads"]):
            out = followup(*cmd, "--config", str(cfg), "--db", url, "--now", later)
            assert out.returncode == 0, (cmd, out.stderr)
            assert "Traceback" not in out.stderr and "unexpected" not in out.stderr


def update(backend: str, url: str, lead_id: str, values: dict[str, Any]) -> None:
    if backend == "sqlite":
        conn = sqlite3.connect(url)
        for column, value in values.items():
            mark = "CAST(? AS TEXT)" if isinstance(value, NotUtf8) else "?"
            raw = value.raw if isinstance(value, NotUtf8) else value
            conn.execute(f"UPDATE leads SET {column} = {mark} WHERE id = ?", (raw, lead_id))
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for column, value in values.items():
            conn.execute(f"UPDATE leads SET {column} = %s WHERE id = %s", (value, lead_id))
