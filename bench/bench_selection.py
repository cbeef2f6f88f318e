"""Selection at scale: a million leads and a million tracking rows, on SQLite and Postgres.

Run by hand (not part of the tests):

    python bench/bench_selection.py [--leads 1000000] [--accounts 10]
        [--sqlite /tmp/bench_selection.db] [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--only sqlite|postgres] [--reconcile]

It builds the host app's lead table (ISO text timestamps on SQLite; timestamptz and jsonb on
Postgres, in a schema of its own, ``bench_selection``, dropped and rebuilt each time) with
bulk SQL (a recursive CTE / generate_series), lets the tool create its own tables
(``open_store`` runs the migrations), fills the tracking, enrollment and opt-out tables the
same way, and then times, through the store's own methods, what a run does before it sends:

* the candidate prefilter for a big account (a tenth of the leads) and a small one (one lead
  in a thousand): the first page, and every page of the account with its lead_states;
* ``lead_states`` for a page of 1000 leads (three IN-list queries per 500 ids);
* the sliding-window rate count, the open-claims scan at run start (and the query it had
  before it repeated the partial index's predicate), the unknown list at run end;
* with ``--reconcile``, the outcome reconcile every live run starts with.

It prints EXPLAIN QUERY PLAN (SQLite) / EXPLAIN (ANALYZE, BUFFERS) (Postgres) of those
queries, twice: with the tool's own tables as its migrations leave them, then again after
creating the index the docs recommend on the host's lead table, ``leads (account_id, id)``
(the tool never creates indexes on a table it does not own).

The data, per lead i (lead ids L0000000.., account i mod --accounts except every 1000th
lead, a category by (i * 7919) mod 100 so that the categories interleave in id order):

  0-39  done: a finished sequence (ended enrollment, 2 sent tracking rows); we spoke last
  40-59 the lead wrote last (waiting for a human)
  60-69 converted (1 tracking row, converted)
  70-79 active: enrolled, step 1 sent (1 tracking row), step 2 due
  80-98 new: silent, no state: the rules decide today
  99    opted out

so 1.0 tracking rows per lead, and 30% of each account's leads pass the prefilter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from followup_cli.models import UNKNOWN  # noqa: E402
from followup_cli.store import SqlStore, open_store  # noqa: E402

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SCHEMA = "bench_selection"
LEAD_INDEX_DDL = "CREATE INDEX IF NOT EXISTS leads_account_id_id ON leads (account_id, id)"
ACCOUNT = "acct_3"  # a tenth of the leads
SMALL_ACCOUNT = "acct_small"  # one lead in a thousand
RECONCILE = False

# category of lead i, the same expression in both dialects
CAT = "((i * 7919) % 100)"


def account_expr(accounts: int) -> str:
    """acct_0..acct_{accounts-1} round robin; one lead in a thousand in a small account."""
    return f"CASE WHEN i % 1000 = 999 THEN '{SMALL_ACCOUNT}' ELSE 'acct_' || (i % {accounts}) END"


def sqlite_leads_sql(n: int, accounts: int) -> str:
    # times: we spoke last `age` hours ago; `age` spreads leads over 30 days
    return f"""
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < {n})
INSERT INTO leads
SELECT printf('L%07d', i), {account_expr(accounts)}, 'u_1', 'conv_' || i, 'ig_' || i,
  'user_' || i, 'Ana',
  CASE WHEN {CAT} BETWEEN 60 AND 69 THEN 6 ELSE 2 + (i % 5) END,
  CASE WHEN {CAT} BETWEEN 60 AND 69 THEN 'converted' ELSE 'qualified' END,
  strftime('%Y-%m-%dT%H:%M:%SZ', '{NOW:%Y-%m-%d %H:%M:%S}',
    '-' || ((i % 720) + CASE WHEN {CAT} BETWEEN 40 AND 59 THEN 0 ELSE 2 END) || ' hours'),
  'how much?',
  strftime('%Y-%m-%dT%H:%M:%SZ', '{NOW:%Y-%m-%d %H:%M:%S}',
    '-' || ((i % 720) + 1) || ' hours'),
  CASE WHEN {CAT} BETWEEN 60 AND 69
    THEN strftime('%Y-%m-%dT%H:%M:%SZ', '{NOW:%Y-%m-%d %H:%M:%S}', '-1 hours') END,
  'Europe/Madrid', '{{"interest": "pricing"}}'
FROM seq"""


def pg_leads_sql(n: int, accounts: int) -> str:
    now = f"'{NOW.isoformat()}'::timestamptz"
    return f"""
INSERT INTO leads
SELECT 'L' || lpad(i::text, 7, '0'), {account_expr(accounts)}, 'u_1', 'conv_' || i,
  'ig_' || i, 'user_' || i, 'Ana',
  CASE WHEN {CAT} BETWEEN 60 AND 69 THEN 6 ELSE 2 + (i % 5) END,
  CASE WHEN {CAT} BETWEEN 60 AND 69 THEN 'converted' ELSE 'qualified' END,
  {now} - interval '1 hour' * ((i % 720) + CASE WHEN {CAT} BETWEEN 40 AND 59 THEN 0 ELSE 2 END),
  'how much?',
  {now} - interval '1 hour' * ((i % 720) + 1),
  CASE WHEN {CAT} BETWEEN 60 AND 69 THEN {now} - interval '1 hour' END,
  'Europe/Madrid', '{{"interest": "pricing"}}'::jsonb
FROM generate_series(0::bigint, {n - 1}) AS i"""


def tool_rows_sql(dialect: str, n: int, accounts: int) -> list[str]:
    """Enrollments, tracking rows and opt-outs for the categories above."""
    if dialect == "sqlite":
        src = (
            "(WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq "
            f"WHERE i + 1 < {n}) SELECT i FROM seq)"
        )
        lid = "printf('L%07d', i)"
        acct = account_expr(accounts)

        def at(hours: str) -> str:
            # the tool's own text form of a time (models.format_time)
            return (
                f"strftime('%Y-%m-%dT%H:%M:%f000Z', '{NOW:%Y-%m-%d %H:%M:%S}', "
                f"'-' || ({hours}) || ' hours')"
            )

        false = "0"
    else:
        src = f"generate_series(0::bigint, {n - 1})"
        lid = "'L' || lpad(i::text, 7, '0')"
        acct = account_expr(accounts)

        def at(hours: str) -> str:
            return f"'{NOW.isoformat()}'::timestamptz - interval '1 hour' * ({hours})"

        false = "false"
    frm = f"FROM {src} AS s(i)" if dialect == "postgres" else f"FROM {src}"
    silence = "(i % 720) + 1"  # hours since we spoke last (the anchor)
    track_cols = (
        "lead_id, sequence_id, message_id, step, account_id, recipient_id, status, "
        "claimed_at, sent_at, run_id, attempts, body_encrypted, updated_at"
    )

    def track(msg: str, step: int, status: str, hours: str, where: str) -> str:
        return (
            f"INSERT INTO followup_tracking ({track_cols}) SELECT {lid}, 's1', '{msg}', {step}, "
            f"{acct}, 'ig_' || i, '{status}', {at(hours)}, {at(hours)}, 'bench', 1, {false}, "
            f"{at(hours)} {frm} WHERE {where}"
        )

    return [
        # done: an enrollment that ended, covering the current silence; two sends
        f"INSERT INTO followup_enrollments (lead_id, sequence_id, account_id, anchor_at, "
        f"started_at, ended_at, ended_reason, holdout) SELECT {lid}, 's1', {acct}, "
        f"{at(silence)}, {at(silence)}, {at(silence + ' - 1')}, 'completed', {false} "
        f"{frm} WHERE {CAT} < 40",
        track("m1", 1, "sent", f"{silence} - 1", f"{CAT} < 40"),
        track("m2", 2, "sent", f"{silence} - 1", f"{CAT} < 40"),
        track("m1", 1, "converted", f"{silence} - 1", f"{CAT} BETWEEN 60 AND 69"),
        # active: enrolled, step 1 out
        f"INSERT INTO followup_enrollments (lead_id, sequence_id, account_id, anchor_at, "
        f"started_at, holdout) SELECT {lid}, 's1', {acct}, {at(silence)}, {at(silence)}, "
        f"{false} {frm} WHERE {CAT} BETWEEN 70 AND 79",
        track("m1", 1, "sent", "(i % 721)", f"{CAT} BETWEEN 70 AND 79"),
        f"INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at) "
        f"SELECT {lid}, 'bench', 'cli', 'bench', {at('1')} {frm} WHERE {CAT} = 99",
        # a handful of open claims and unknowns, as a busy store has
        "UPDATE followup_tracking SET status = 'unknown' WHERE id % 50000 = 7",
        "UPDATE followup_tracking SET status = 'pending' WHERE id % 100000 = 11",
    ]


# --------------------------------------------------------------------- helpers


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """Median wall time in ms over ``repeat`` calls (after one warm-up), and the last result."""
    out = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def captured(store: SqlStore, call: Callable[[], Any]) -> tuple[str, dict[str, Any]]:
    """The first query a store method sends (its exact SQL and parameters), past the lead
    table's column lookup."""
    seen: list[tuple[str, dict[str, Any]]] = []
    real = store.query  # noqa: SLF001

    def spy(sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        seen.append((sql, dict(params or {})))
        return real(sql, params)

    store.query = spy  # type: ignore[method-assign]  # noqa: SLF001
    try:
        call()
    finally:
        del store.query  # noqa: SLF001
    return next((q, p) for q, p in seen if "information_schema" not in q and "PRAGMA" not in q)


def explain(store: SqlStore, sql: str, params: dict[str, Any]) -> str:
    if store.dialect == "sqlite":
        rows = store.query("EXPLAIN QUERY PLAN " + sql, params)  # noqa: SLF001
        return "\n".join(f"{r['id']:>3} {r['parent']:>3}  {r['detail']}" for r in rows)
    rows = store.query("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)  # noqa: SLF001
    return "\n".join(r["QUERY PLAN"] for r in rows)


def whole_account(store: SqlStore, account: str) -> tuple[int, int]:
    """Every page of one account's candidates, with lead_states per page, as a run plans."""
    after, pages, leads = "", 0, 0
    while True:
        page = store.candidate_leads(account, 2, 6, after, 1000)
        if not page:
            break
        pages += 1
        leads += len(page)
        store.lead_states([r["id"] for r in page])
        after = page[-1]["id"]
        if len(page) < 1000:
            break
    return pages, leads


OLD_OPEN_CLAIMS = (  # the run-start query before the partial-index fix, for comparison
    "SELECT t.id, t.lead_id, t.sequence_id, t.message_id, t.account_id, t.claimed_at, "
    "t.run_id, r.host, r.pid, r.heartbeat_at, r.finished_at FROM followup_tracking t "
    "LEFT JOIN followup_runs r ON r.run_id = t.run_id WHERE t.status = :p"
)


def measure(store: SqlStore, label: str) -> None:
    since = NOW - timedelta(hours=1)
    print(f"\n### {store.dialect}: {label}\n")
    print("| what | time |\n|---|---|")
    for account in (ACCOUNT, SMALL_ACCOUNT):
        first_ms, page = timed(lambda a=account: store.candidate_leads(a, 2, 6, "", 1000))
        ids = [r["id"] for r in page]
        states_ms, _ = timed(lambda i=ids: store.lead_states(i))
        t = time.perf_counter()
        pages, leads = whole_account(store, account)
        whole = time.perf_counter() - t
        print(f"| {account}: first candidate page ({len(page)} leads) | {first_ms:.1f} ms |")
        print(f"| {account}: lead_states for that page | {states_ms:.1f} ms |")
        print(
            f"| {account}: every page ({pages} pages, {leads} candidates) + lead_states "
            f"| {whole:.2f} s |"
        )
    window_ms, n_recent = timed(lambda: store.recent_sends(ACCOUNT, since))
    claims_ms, claims = timed(store.open_claims)
    old_ms, _ = timed(lambda: store.query(OLD_OPEN_CLAIMS, {"p": "pending"}))  # noqa: SLF001
    unknown_ms, unknown = timed(lambda: store.followups(status=UNKNOWN))
    print(f"| rate-window count ({n_recent} claims in the hour) | {window_ms:.2f} ms |")
    print(f"| open claims at run start ({len(claims)} pending) | {claims_ms:.2f} ms |")
    print(f"| the same with the old query (`status = :p` alone) | {old_ms:.2f} ms |")
    print(f"| unknown follow-ups at run end ({len(unknown)}) | {unknown_ms:.2f} ms |")

    page = store.candidate_leads(ACCOUNT, 2, 6, "", 1000)
    ids = [r["id"] for r in page]
    queries = {
        "candidate page (big account)": captured(
            store, lambda: store.candidate_leads(ACCOUNT, 2, 6, "", 1000)
        ),
        "candidate page (small account)": captured(
            store, lambda: store.candidate_leads(SMALL_ACCOUNT, 2, 6, "", 1000)
        ),
        "rate-window count": captured(store, lambda: store.recent_sends(ACCOUNT, since)),
        "lead_states: tracking rows of a page (3 ids shown)": captured(
            store, lambda: store.lead_states(ids[:3])
        ),
        "open claims (run start)": captured(store, store.open_claims),
        "open claims, old query": (OLD_OPEN_CLAIMS, {"p": "pending"}),
        "unknown follow-ups (run end)": captured(store, lambda: store.followups(status=UNKNOWN)),
    }
    for name, (q, p) in queries.items():
        print(f"\n#### {store.dialect}, {label}: {name}\n```\n{explain(store, q, p)}\n```")


# ----------------------------------------------------------------- the backends


def time_reconcile(store: SqlStore) -> None:
    """The outcome reconcile every live run does first (outcomes.py), for scale: the first
    one (no lead marked yet: every lead with follow-ups or enrollments in the look-back is
    read), a steady-state one (nothing changed), and one after 1% of those leads replied."""
    from followup_cli.outcomes import reconcile

    def once(label: str) -> None:
        t = time.perf_counter()
        counts = reconcile(store, None, NOW)  # type: ignore[arg-type]  # it ignores the config
        took = time.perf_counter() - t
        print(
            f"({store.dialect}: reconcile, {label}: {counts.leads_checked} leads read, "
            f"{counts.responded} responses attributed, {took:.2f} s)"
        )

    print()
    once("first run, no marks")
    once("next run, nothing changed")
    reply = NOW - timedelta(minutes=5)
    with store.transaction():
        store.execute(  # noqa: SLF001
            "UPDATE leads SET last_inbound_at = :t WHERE id IN (SELECT lead_id FROM "
            "followup_enrollments WHERE ended_at IS NULL ORDER BY lead_id LIMIT :n)",
            {
                "t": reply,
                "n": max(
                    1,
                    store.query(  # noqa: SLF001
                        "SELECT COUNT(*) AS n FROM followup_enrollments"
                    )[0]["n"]
                    // 100,
                ),
            },
        )
    once("after 1% of the enrolled leads replied")


def rounds(store: SqlStore, analyze: str) -> None:
    store.execute(analyze)  # noqa: SLF001
    measure(store, "the tool's migrations, no index on the lead table")
    t = time.perf_counter()
    store.execute(LEAD_INDEX_DDL)  # noqa: SLF001
    store.execute(analyze)  # noqa: SLF001
    print(f"\n({store.dialect}: {LEAD_INDEX_DDL} took {time.perf_counter() - t:.1f} s)")
    measure(store, "the same + leads (account_id, id), the index the README recommends")
    if RECONCILE:
        time_reconcile(store)


def fill(store: SqlStore, n: int, accounts: int) -> None:
    t = time.perf_counter()
    with store.transaction():
        for stmt in tool_rows_sql(store.dialect, n, accounts):
            store.execute(stmt)  # noqa: SLF001
    counts = {
        table: store.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]  # noqa: SLF001
        for table in ("followup_tracking", "followup_enrollments", "followup_optouts")
    }
    print(f"{store.dialect}: the tool's rows {counts} in {time.perf_counter() - t:.1f} s")


def bench_sqlite(path: Path, n: int, accounts: int) -> None:
    import sqlite3

    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
        "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, "
        "score INTEGER, status TEXT, last_inbound_at TEXT, last_inbound_text TEXT, "
        "last_outbound_at TEXT, converted_at TEXT, timezone TEXT, attributes TEXT)"
    )
    t = time.perf_counter()
    conn.execute(sqlite_leads_sql(n, accounts))
    conn.commit()
    conn.close()
    print(f"sqlite: {n} leads in {time.perf_counter() - t:.1f} s")
    store = open_store(str(path))
    try:
        fill(store, n, accounts)
        rounds(store, "ANALYZE")
    finally:
        store.close()


def bench_postgres(url: str, n: int, accounts: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(
            f"CREATE TABLE {SCHEMA}.leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
            "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, "
            "score INTEGER, status TEXT, last_inbound_at TIMESTAMPTZ, last_inbound_text TEXT, "
            "last_outbound_at TIMESTAMPTZ, converted_at TIMESTAMPTZ, timezone TEXT, "
            "attributes JSONB)"
        )
        t = time.perf_counter()
        conn.execute(f"SET search_path = {SCHEMA}")
        conn.execute(pg_leads_sql(n, accounts))
        print(f"postgres: {n} leads in {time.perf_counter() - t:.1f} s")
    sep = "&" if "?" in url else "?"
    store = open_store(f"{url}{sep}options=-csearch_path%3D{SCHEMA}")
    try:
        fill(store, n, accounts)
        rounds(store, "ANALYZE")
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=10)
    ap.add_argument("--sqlite", type=Path, default=Path("/tmp/bench_selection.db"))
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--only", choices=("sqlite", "postgres"))
    ap.add_argument("--reconcile", action="store_true", help="also time the run-start reconcile")
    args = ap.parse_args()
    global RECONCILE
    RECONCILE = args.reconcile
    if args.only in (None, "sqlite"):
        bench_sqlite(args.sqlite, args.leads, args.accounts)
    if args.only in (None, "postgres"):
        bench_postgres(args.pg, args.leads, args.accounts)


if __name__ == "__main__":
    main()
