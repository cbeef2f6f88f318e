"""End-to-end throughput of one `followup run`: N due leads, sent through the fake Graph
API on loopback (real HTTP), on SQLite and (if reachable) Postgres. Run by hand:

    python bench/bench_run.py --leads 5000 [--accounts 4] [--pg postgresql://postgres@127.0.0.1/test]

Prints the planning time, the send time, messages per second and the per-message cost of
the claim/record transactions. The rate limit is raised so it does not cap the figure.
With ``FOLLOWUP_ENCRYPTION_KEY=$(followup keygen)`` in the environment the store seals
texts, ids and error texts as a keyed run does (bench/RESULTS-run.md has both figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from followup_cli.channels import make_channel  # noqa: E402
from followup_cli.clock import Clock  # noqa: E402
from followup_cli.config import parse_config  # noqa: E402
from followup_cli.engine import Engine, RunOptions  # noqa: E402
from followup_cli.store import open_store  # noqa: E402
from tests.fakes.graph_api import FakeGraphAPI  # noqa: E402
from tests.helpers import LeadDB, base_config, lead  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def config_text(base_url: str, accounts: int) -> str:
    import yaml

    cfg = base_config(
        channel={
            "type": "instagram",
            "api_base": base_url,
            "window_hours": 24,
            "messages_per_hour": 1_000_000,
            "max_retries": 0,
        },
        settings={"max_in_flight": accounts, "quiet_hours": None, "timezone": "UTC"},
    )
    cfg["accounts"] = [
        {"id": f"acct_{i}", "ig_user_id": f"1784100000000{i:04d}", "token_env": "BENCH_TOKEN"}
        for i in range(accounts)
    ]
    return yaml.safe_dump(cfg)


def bench(db: LeadDB, n: int, accounts: int) -> None:
    t = NOW - timedelta(hours=5)
    rows = [
        lead(
            f"L{i:07d}",
            account_id=f"acct_{i % accounts}",
            last_inbound_at=t,
            last_outbound_at=t + timedelta(hours=1),
        )
        for i in range(n)
    ]
    db.insert(*rows)
    with FakeGraphAPI() as fake:
        import os

        os.environ["BENCH_TOKEN"] = "tok"
        loaded = parse_config(config_text(fake.base_url, accounts), "bench.yaml")
        store = open_store(db.url, "leads")
        engine = Engine(loaded, store, make_channel(loaded.config), Clock(fixed=NOW))
        start = time.perf_counter()
        plan_store = store.clone()
        for acct in loaded.config.accounts:
            from followup_cli.engine import AccountResult

            engine.plan_account(acct, plan_store, NOW, AccountResult(acct.id))
        plan = time.perf_counter() - start
        start = time.perf_counter()
        summary = engine.run(RunOptions(now=NOW, budget_seconds=3600))
        total = time.perf_counter() - start
        sent = summary.total("sent")
        print(
            f"{db.backend:8s} leads={n:6d} accounts={accounts} plan={plan:6.2f}s "
            f"run={total:6.2f}s sent={sent} ({sent / total:7.1f} msg/s, "
            f"{1000 * total / max(sent, 1):5.2f} ms/msg) deliveries={len(fake.deliveries)}"
        )
        store.close()
        plan_store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--accounts", type=int, default=4)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench(LeadDB.sqlite(Path(tmp)), args.leads, args.accounts)
    try:
        import os

        os.environ.setdefault("FOLLOWUP_TEST_PG", args.pg)
        db = LeadDB.postgres()
    except Exception as exc:  # noqa: BLE001
        print(f"postgres skipped: {exc}")
        return
    try:
        bench(db, args.leads, args.accounts)
    finally:
        db.close()
    _ = uuid


if __name__ == "__main__":
    main()
