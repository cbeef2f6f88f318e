"""The cost of the audit chain (issue 9): one ``audit()`` call (a row chained to the one
before, under the chain's lock) in a transaction of its own, and ``audit verify`` over the
rows written. SQLite and (if reachable) Postgres. Run by hand:

    python bench/bench_audit.py --rows 2000   (Postgres: $FOLLOWUP_TEST_PG, as the tests)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from followup_cli.auditverify import verify  # noqa: E402
from followup_cli.store import open_store  # noqa: E402
from tests.helpers import LeadDB, pg_available  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def bench(db: LeadDB, n: int) -> None:
    store = open_store(db.url)
    try:
        t = time.perf_counter()
        for i in range(n):
            with store.transaction():
                detail = {"followup_id": i, "outcome": "sent", "attempts": 1, "code": None}
                store.audit("send", NOW, "ops", "run1", f"L{i}", "acct", "s1", "m1", detail)
        write = time.perf_counter() - t
        t = time.perf_counter()
        report = verify(store)
        check = time.perf_counter() - t
    finally:
        store.close()
    print(
        f"{db.backend:8} rows={n:6} audit()={write * 1000 / n:6.3f} ms/row "
        f"verify={check:5.2f}s ({check * 1e6 / n:4.0f} us/row) intact={report.intact}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = LeadDB.sqlite(Path(tmp))
        try:
            bench(db, args.rows)
        finally:
            db.close()
    if not pg_available():
        db = LeadDB.postgres()
        try:
            bench(db, args.rows)
        finally:
            db.close()


if __name__ == "__main__":
    main()
