"""Write transactions and statements per sent message: a live run in process on SQLite,
200 due over 4 accounts, the loopback fake Graph API, every top-level ``transaction()`` and
every ``query``/``execute`` counted. A deterministic figure (load does not change it):

    python bench/count_writes.py            # this tree
    python bench/count_writes.py OTHER_TREE # a tree from `git archive REV src` (its src/)
    python bench/count_writes.py --by-kind  # and the statements by kind, per message
    python bench/count_writes.py --due 1000 # more due leads (200 by default)
    python bench/count_writes.py --store postgres  # Postgres ($FOLLOWUP_TEST_PG), and the
                                            # round trips to the server per message

Round trips (Postgres) are counted in psycopg itself: outside pipeline mode every
statement a cursor executes and every command the connection sends (BEGIN, COMMIT) waits
for its answer, one round trip each; in pipeline mode only a sync, or a flush whose
results the client then waits for, is one.

Since the batched claims (issue 11 part 2) a message costs one write transaction (its
attempt mark, carrying the previous outcome) plus its share of a batch claim (one per up
to 16 leads of an account); ``--by-kind`` shows where the statements go.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parents[1]
T = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
DUE, ACCOUNTS = 200, 4


def kind(sql: str) -> str:
    """ "INSERT followup_tracking", "SELECT followup_audit_head", ... (the first table)."""
    words = sql.split()
    verb = words[0].upper() if words else "?"
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+([a-z_]+)", sql, re.I)
    return f"{verb} {table.group(1) if table else ''}".strip()


def count_round_trips(counts: dict[str, int]) -> None:
    """Count psycopg's waits for the server in ``counts["rt"]`` (see the module's doc)."""
    import psycopg
    from psycopg import _connection_base, _pipeline_base

    execute = psycopg.Cursor.execute
    command = _connection_base.BaseConnection._exec_command
    sync = _pipeline_base.BasePipeline._enqueue_sync
    fetch = _pipeline_base.BasePipeline._fetch_gen

    def counted_execute(self: Any, *a: Any, **k: Any) -> Any:
        counts["rt"] += self._conn._pipeline is None
        return execute(self, *a, **k)

    def counted_command(self: Any, *a: Any, **k: Any) -> Any:
        counts["rt"] += self._pipeline is None
        return command(self, *a, **k)

    def counted_sync(self: Any) -> Any:
        counts["rt"] += 1
        return sync(self)

    def counted_fetch(self: Any, *, flush: bool) -> Any:
        counts["rt"] += bool(flush and self.result_queue)
        return fetch(self, flush=flush)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    _connection_base.BaseConnection._exec_command = counted_command  # type: ignore[method-assign]
    _pipeline_base.BasePipeline._enqueue_sync = counted_sync  # type: ignore[method-assign]
    _pipeline_base.BasePipeline._fetch_gen = counted_fetch  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    by_kind = "--by-kind" in argv
    dialect = "sqlite"
    if "--store" in argv:
        i = argv.index("--store")
        dialect = argv[i + 1]
        argv = argv[:i] + argv[i + 2 :]
    argv = [a for a in argv if a != "--by-kind"]
    due = DUE
    if "--due" in argv:
        i = argv.index("--due")
        due = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    root = Path(argv[0]).resolve() if argv else HERE
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(root / "src"))
    mod = importlib.import_module
    followup_cli = mod("followup_cli")
    assert str(root) in followup_cli.__file__, followup_cli.__file__
    make_channel = mod("followup_cli.channels").make_channel
    load_config = mod("followup_cli.config").load_config
    engine = mod("followup_cli.engine")
    open_store = mod("followup_cli.store").open_store
    store_class = (
        mod("followup_cli.store.sqlite").SQLiteStore
        if dialect == "sqlite"
        else mod("followup_cli.store.postgres").PostgresStore
    )
    fake_api = mod("tests.fakes.graph_api").FakeGraphAPI
    helpers = mod("tests.helpers")

    counts = {"tx": 0, "stmt": 0, "rt": 0}
    kinds: Counter = Counter()
    tx, query, run = store_class.transaction, store_class.query, store_class.execute

    @contextmanager
    def counted_tx(self: Any) -> Iterator[None]:
        counts["tx"] += not self._depth
        with tx(self):
            yield

    def counted_query(self: Any, *a: Any, **k: Any) -> Any:
        counts["stmt"] += 1
        kinds[kind(a[0] if a else k.get("sql", ""))] += 1
        return query(self, *a, **k)

    def counted_run(self: Any, *a: Any, **k: Any) -> Any:
        counts["stmt"] += 1
        kinds[kind(a[0] if a else k.get("sql", ""))] += 1
        return run(self, *a, **k)

    tmp = Path(tempfile.mkdtemp())
    os.chdir(tmp)
    db = helpers.LeadDB.sqlite(tmp) if dialect == "sqlite" else helpers.LeadDB.postgres()
    db.insert(
        *[
            helpers.lead(
                f"a{i % ACCOUNTS}_l{i}",
                account_id=f"acct_{i % ACCOUNTS}",
                user_id=f"u_{i % ACCOUNTS}",
                last_inbound_at=T - timedelta(hours=5),
                last_outbound_at=T - timedelta(hours=4),
            )
            for i in range(due)
        ]
    )
    accounts = []
    for k in range(ACCOUNTS):
        os.environ[f"FOLLOWUP_TOKEN_{k}"] = "tok"
        accounts.append(
            {
                "id": f"acct_{k}",
                "user_id": f"u_{k}",
                "ig_user_id": f"1784100000000{k:04d}",
                "token_env": f"FOLLOWUP_TOKEN_{k}",
            }
        )
    with fake_api() as fake:
        channel = {
            "type": "instagram",
            "api_base": fake.base_url,
            "window_hours": 24,
            "max_retries": 0,
            "messages_per_hour": 100_000,
        }
        cfg = helpers.base_config(channel=channel, accounts=accounts)
        loaded = load_config(helpers.write_config(tmp / "s.yaml", cfg))
        store = open_store(db.url, "leads")
        eng = engine.Engine(loaded, store, make_channel(loaded.config, sleep=lambda s: None))
        store_class.transaction = counted_tx
        store_class.query, store_class.execute = counted_query, counted_run
        later = (
            getattr(store_class, "execute_later", None),
            getattr(store_class, "query_later", None),
        )
        if dialect == "postgres" and later[0] is not None:  # statements not waited for

            def counted_execute_later(self: Any, *a: Any, **k: Any) -> Any:
                if self.pipelining:
                    counts["stmt"] += 1
                    kinds[kind(a[0] if a else k.get("sql", ""))] += 1
                return later[0](self, *a, **k)

            def counted_query_later(self: Any, *a: Any, **k: Any) -> Any:
                if self.pipelining:
                    counts["stmt"] += 1
                    kinds[kind(a[0] if a else k.get("sql", ""))] += 1
                return later[1](self, *a, **k)

            store_class.execute_later = counted_execute_later
            store_class.query_later = counted_query_later
        if dialect == "postgres":
            count_round_trips(counts)
        cpu = time.process_time()
        try:
            sent = eng.run(engine.RunOptions(now=T)).total("sent")
        finally:
            cpu = time.process_time() - cpu
            db.close()
    n = max(sent, 1)
    trips = f", round trips {counts['rt']} ({counts['rt'] / n:.1f}/msg)" if counts["rt"] else ""
    print(
        f"{root} ({dialect}): sent {sent}; write transactions {counts['tx']} "
        f"({counts['tx'] / n:.2f}/msg), statements {counts['stmt']} "
        f"({counts['stmt'] / n:.1f}/msg){trips}; CPU {1000 * cpu / n:.2f} ms/msg (this process, "
        "the fake API's threads and the counting included)"
    )
    if by_kind:
        for what, c in kinds.most_common():
            print(f"  {c / n:6.2f}/msg  {c:6d}  {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
