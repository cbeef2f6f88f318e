"""Write transactions and statements per sent message: a live run in process on SQLite,
200 due over 4 accounts, the loopback fake Graph API, every top-level ``transaction()`` and
every ``query``/``execute`` counted. A deterministic figure (load does not change it):

    python bench/count_writes.py            # this tree
    python bench/count_writes.py OTHER_TREE # a tree from `git archive REV src` (its src/)
    python bench/count_writes.py --by-kind  # and the statements by kind, per message

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


def main(argv: list[str]) -> None:
    by_kind = "--by-kind" in argv
    argv = [a for a in argv if a != "--by-kind"]
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
    sqlite_store = mod("followup_cli.store.sqlite").SQLiteStore
    fake_api = mod("tests.fakes.graph_api").FakeGraphAPI
    helpers = mod("tests.helpers")

    counts = {"tx": 0, "stmt": 0}
    kinds: Counter = Counter()
    tx, query, run = sqlite_store.transaction, sqlite_store.query, sqlite_store.execute

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
    db = helpers.LeadDB.sqlite(tmp)
    db.insert(
        *[
            helpers.lead(
                f"a{i % ACCOUNTS}_l{i}",
                account_id=f"acct_{i % ACCOUNTS}",
                user_id=f"u_{i % ACCOUNTS}",
                last_inbound_at=T - timedelta(hours=5),
                last_outbound_at=T - timedelta(hours=4),
            )
            for i in range(DUE)
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
        sqlite_store.transaction = counted_tx
        sqlite_store.query, sqlite_store.execute = counted_query, counted_run
        sent = eng.run(engine.RunOptions(now=T)).total("sent")
    n = max(sent, 1)
    print(
        f"{root}: sent {sent}; write transactions {counts['tx']} ({counts['tx'] / n:.2f}/msg), "
        f"statements {counts['stmt']} ({counts['stmt'] / n:.1f}/msg)"
    )
    if by_kind:
        for what, c in kinds.most_common():
            print(f"  {c / n:6.2f}/msg  {c:6d}  {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
