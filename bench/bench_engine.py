"""The engine at scale: every row of issue 11's table, one command each.

    python bench/bench_engine.py dryrun --leads 1000000 --due 100000 [--text] [--warm]
    python bench/bench_engine.py idle   --leads 1000000            # a real run, nothing due
    python bench/bench_engine.py idle   --leads 200000 --text-kind accented  # '¿cuánto...? 😊'
    python bench/bench_engine.py send   --due 2000 --accounts 4     # loopback fake, no latency
    python bench/bench_engine.py inflight --accounts 50 --per-account 20 --latency 0.15
    python bench/bench_engine.py scaleout --runs 4 --due 800 --accounts 50 --latency 0.05

Common options: ``--repeat N`` (runs per figure, the median is printed; default 3),
``--pg URL`` (default postgresql://postgres@127.0.0.1:5432/test; the data lives in a schema
of its own, ``bench_engine`` or $BENCH_SCHEMA, dropped and rebuilt), ``--tmp DIR`` for the
SQLite file.

Every measured run is the installed command (``python -m followup_cli run ...``) in a child
process: wall time from spawn to exit, and its peak RSS from ``os.wait4`` (the child's own
``ru_maxrss``), so the figures are what cron would see. The fake Graph API
(tests/fakes/graph_api.py) runs in this process; ``--latency`` makes it answer each send that
many seconds late (a sleep in its request hook), which is how a real API behaves.

The data (deterministic, built with bulk SQL: a recursive CTE on SQLite, generate_series on
Postgres), at NOW = 2026-03-02 10:00 UTC, ``--accounts`` accounts round robin, one sequence
``s1`` (m1 after 3 h, m2 after 20 h, inside a 24 h window). Lead i is due when
``(i * 7919) % leads < due`` (exactly ``due`` leads, spread over the id range); the others
are, by ``(i // accounts) % 10``:

  0-2  enrolled, m1 sent an hour ago, m2 due in 16 h          (1 tracking row)
  3-5  done: the enrollment ended (completed) with m1 and m2   (2 tracking rows)
  6    converted                                               (1 tracking row)
  7-8  the lead wrote last (waiting for a human)
  9    new and silent, but we wrote an hour ago: m1 due in 2 h

so about 1.0 tracking rows per lead and, with nothing due, 40 % of the leads are "waiting":
what the SQL prefilter let through before issue 11 and the rules then decided were not due.

Keep timing assertions out of the tests: tests/integration/test_bench_smoke.py runs each
command at tiny sizes so the script cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.fakes.graph_api import FakeGraphAPI  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PG = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_engine"


# --------------------------------------------------------------------------- config


def config(accounts: int, channel: dict[str, Any] | None = None, **settings: Any) -> str:
    cfg: dict[str, Any] = {
        "version": 1,
        "settings": {
            "timezone": "UTC",
            "no_response_hours": 2,
            "min_interval_hours": 4,
            "max_per_lead_per_day": 2,
            "quiet_hours": None,
            **settings,
        },
        "channel": channel or {"type": "console", "window_hours": 24, "messages_per_hour": 10**6},
        "accounts": [
            {
                "id": f"acct_{a}",
                "user_id": "u_1",
                "ig_user_id": f"1784100000{a:07d}",
                "token_env": "BENCH_TOKEN",
            }
            for a in range(accounts)
        ],
        "sequences": [
            {
                "id": "s1",
                "name": "Main",
                "priority": 1,
                "trigger": [{"field": "score", "op": "between", "value": [2, 6]}],
                "messages": [
                    {"id": "m1", "delay_hours": 3, "template": "Hi {{ lead.first_name }}, one"},
                    {"id": "m2", "delay_hours": 20, "template": "Hi {{ lead.first_name }}, two"},
                ],
            }
        ],
    }
    return yaml.safe_dump(cfg, sort_keys=False)


# ----------------------------------------------------------------------------- data


def _host_ts(dialect: str, hours_ago: float) -> str:
    t = NOW - timedelta(hours=hours_ago)
    if dialect == "sqlite":
        return "'" + t.strftime("%Y-%m-%dT%H:%M:%SZ") + "'"
    return f"'{t.isoformat()}'::timestamptz"


def _tool_ts(dialect: str, hours_ago: float) -> str:
    t = NOW - timedelta(hours=hours_ago)
    if dialect == "sqlite":
        return "'" + t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"
    return f"'{t.isoformat()}'::timestamptz"


# every lead's last message (--text-kind): none holds an opt-out keyword
TEXTS = {"ascii": "how much?", "accented": "¿cuánto cuesta el envío? 😊"}


def data_sql(
    dialect: str, leads: int, due: int, accounts: int, text: str = TEXTS["ascii"]
) -> list[str]:
    """The lead table's rows and the tool's own rows (run after `followup migrate`)."""
    if dialect == "sqlite":
        src = (
            "(WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq "
            f"WHERE i + 1 < {leads}) SELECT i FROM seq)"
        )
        lid, frm, false = "printf('L%07d', i)", f"FROM {src}", "0"
        attrs = '\'{"interest": "pricing"}\''
    else:
        lid = "'L' || lpad(i::text, 7, '0')"
        frm = f"FROM generate_series(0::bigint, {leads - 1}) AS s(i)"
        false, attrs = "false", '\'{"interest": "pricing"}\'::jsonb'
    acct = f"'acct_' || (i % {accounts})"
    is_due = f"((i * 7919) % {leads} < {due})"
    cat = f"((i / {accounts}) % 10)"

    def when(due_h: float, by_cat: dict[str, float], ts: Callable[[str, float], str]) -> str:
        arms = " ".join(f"WHEN {cat} {cond} THEN {ts(dialect, h)}" for cond, h in by_cat.items())
        return f"CASE WHEN {is_due} THEN {ts(dialect, due_h)} {arms} END"

    h = _host_ts
    last_out = when(5, {"<= 2": 4, "<= 5": 30, "= 6": 30, "<= 8": 3, "= 9": 1}, h)
    last_in = when(6, {"<= 2": 5, "<= 5": 31, "= 6": 31, "<= 8": 2, "= 9": 2}, h)
    converted = f"CASE WHEN NOT {is_due} AND {cat} = 6 THEN {h(dialect, 1)} END"
    status = f"CASE WHEN NOT {is_due} AND {cat} = 6 THEN 'converted' ELSE 'qualified' END"
    quoted = "'" + text.replace("'", "''") + "'"
    out = [
        f"INSERT INTO leads SELECT {lid}, {acct}, 'u_1', 'conv_' || i, 'ig_' || i, "
        f"'user_' || i, 'Ana', 2 + (i % 5), {status}, {last_in}, {quoted}, {last_out}, "
        f"{converted}, 'UTC', {attrs} {frm}"
    ]
    t = _tool_ts
    cols = (
        "lead_id, sequence_id, message_id, step, account_id, recipient_id, status, "
        "claimed_at, sent_at, run_id, attempts, body_encrypted, updated_at"
    )

    def track(msg: str, step: int, status: str, hours: float, where: str) -> str:
        at = t(dialect, hours)
        return (
            f"INSERT INTO followup_tracking ({cols}) SELECT {lid}, 's1', '{msg}', {step}, "
            f"{acct}, 'ig_' || i, '{status}', {at}, {at}, 'bench', 1, {false}, {at} "
            f"{frm} WHERE NOT {is_due} AND {where}"
        )

    enroll = (
        "INSERT INTO followup_enrollments (lead_id, sequence_id, account_id, anchor_at, "
        "started_at, ended_at, ended_reason, holdout) SELECT "
    )
    out += [
        f"{enroll}{lid}, 's1', {acct}, {t(dialect, 4)}, {t(dialect, 1)}, NULL, NULL, {false} "
        f"{frm} WHERE NOT {is_due} AND {cat} <= 2",
        track("m1", 1, "sent", 1, f"{cat} <= 2"),
        f"{enroll}{lid}, 's1', {acct}, {t(dialect, 30)}, {t(dialect, 27)}, {t(dialect, 10)}, "
        f"'completed', {false} {frm} WHERE NOT {is_due} AND {cat} BETWEEN 3 AND 5",
        track("m1", 1, "sent", 27, f"{cat} BETWEEN 3 AND 5"),
        track("m2", 2, "sent", 10, f"{cat} BETWEEN 3 AND 5"),
        track("m1", 1, "converted", 20, f"{cat} = 6"),
    ]
    return out


LEADS_DDL = {
    "sqlite": "CREATE TABLE leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
    "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, score INTEGER, "
    "status TEXT, last_inbound_at TEXT, last_inbound_text TEXT, last_outbound_at TEXT, "
    "converted_at TEXT, timezone TEXT, attributes TEXT)",
    "postgres": "CREATE TABLE leads (id TEXT PRIMARY KEY, account_id TEXT, user_id TEXT, "
    "conversation_id TEXT, recipient_id TEXT, username TEXT, first_name TEXT, score INTEGER, "
    "status TEXT, last_inbound_at TIMESTAMPTZ, last_inbound_text TEXT, "
    "last_outbound_at TIMESTAMPTZ, converted_at TIMESTAMPTZ, timezone TEXT, attributes JSONB)",
}
LEAD_INDEX = "CREATE INDEX leads_account_id_id ON leads (account_id, id)"


@dataclass
class Store:
    dialect: str
    url: str
    cfg: Path

    def sql(self, statements: list[str]) -> None:
        if self.dialect == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url)
            for s in statements:
                conn.execute(s)
            conn.commit()
            conn.close()
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def query(self, sql: str) -> list[tuple]:
        if self.dialect == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.url)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()


def build(
    dialect: str,
    tmp: Path,
    pg: str,
    leads: int,
    due: int,
    accounts: int,
    cfg_text: str,
    text: str = TEXTS["ascii"],
) -> Store:
    schema = os.environ.get("BENCH_SCHEMA", SCHEMA)
    """A fresh store with the data above; the tool's tables through `followup migrate`."""
    cfg = tmp / f"bench-{dialect}.yaml"
    cfg.write_text(cfg_text)
    if dialect == "sqlite":
        path = tmp / "bench.db"
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        store = Store("sqlite", str(path), cfg)
    else:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg else "?"
        store = Store("postgres", f"{pg}{sep}options=-csearch_path%3D{schema}", cfg)
    t = time.perf_counter()
    store.sql([LEADS_DDL[dialect], LEAD_INDEX])
    cli("migrate", "--config", str(cfg), "--db", store.url)
    store.sql(data_sql(dialect, leads, due, accounts, text))
    if dialect == "postgres":
        store.sql(["ANALYZE"])
    print(
        f"# {dialect}: {leads} leads ({due} due), {accounts} accounts built in "
        f"{time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )
    return store


# ------------------------------------------------------------------------ measuring


@dataclass
class Measured:
    seconds: float
    rss_mib: float
    code: int
    stdout: str
    stderr: str
    cpu: float = (
        0.0  # the child's user + system CPU seconds (load inflates wall time, less so this)
    )


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUP_")}
    e["BENCH_TOKEN"] = "tok"
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "followup_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )


def finish(p: subprocess.Popen, started: float) -> Measured:
    """Wait for a child, reading its pipes; wall time and its own peak RSS (os.wait4)."""
    box: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        box[name] = stream.read()

    threads = [
        threading.Thread(target=drain, args=("out", p.stdout)),
        threading.Thread(target=drain, args=("err", p.stderr)),
    ]
    for th in threads:
        th.start()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - started
    for th in threads:
        th.join()
    for stream in (p.stdout, p.stderr):
        if stream is not None:
            stream.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        seconds,
        usage.ru_maxrss / 1024,
        p.returncode,
        box["out"].decode(errors="replace"),
        box["err"].decode(errors="replace"),
        usage.ru_utime + usage.ru_stime,
    )


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> Measured:
    started = time.perf_counter()
    m = finish(spawn(*args), started)
    if m.code not in ok:
        raise SystemExit(f"followup {' '.join(args)} exited {m.code}: {m.stderr.strip()[-2000:]}")
    return m


def median_of(runs: list[Measured]) -> tuple[float, float]:
    return statistics.median(r.seconds for r in runs), max(r.rss_mib for r in runs)


def stores(args: argparse.Namespace) -> list[str]:
    return ["sqlite", "postgres"] if args.store == "both" else [args.store]


# ------------------------------------------------------------------------- commands


def cmd_dryrun(args: argparse.Namespace, tmp: Path) -> None:
    """`run --dry-run [--json]`: time and peak RSS at --leads / --due."""
    for dialect in stores(args):
        s = build(dialect, tmp, args.pg, args.leads, args.due, args.accounts, config(args.accounts))
        base = ["run", "--dry-run", "--now", NOW.isoformat(), "--config", str(s.cfg)]
        base += ["--db", s.url] + ([] if args.text else ["--json"])
        if args.warm:
            # the store as cron leaves it: a live run before (sends nothing with --limit 0)
            cli("run", "--limit", "0", *base[2:6], "--db", s.url, ok=(0, 3))
        runs = [cli(*base) for _ in range(args.repeat)]
        sec, rss = median_of(runs)
        if args.text:
            lines = runs[-1].stdout.count("\n")
            what = f"stdout {len(runs[-1].stdout) / 1e6:.1f} MB, {lines} lines"
        else:
            what = f"would_send {json.loads(runs[-1].stdout)['would_send']}"
        print(
            f"dryrun{' (text)' if args.text else ' --json'} {dialect}: leads={args.leads} "
            f"due={args.due}: median {sec:.2f}s of {[round(r.seconds, 2) for r in runs]}, "
            f"peak RSS {rss:.0f} MiB, {what}, {1e6 * sec / max(args.due, 1):.1f} us/due lead; "
            f"CPU {statistics.median(r.cpu for r in runs):.2f}s"
        )


def cmd_idle(args: argparse.Namespace, tmp: Path) -> None:
    """A real run with nothing due: the first run (which may write what later runs use) and
    the median of the runs after it."""
    for dialect in stores(args):
        text = TEXTS[args.text_kind]
        cfg = config(args.accounts)
        s = build(dialect, tmp, args.pg, args.leads, 0, args.accounts, cfg, text)
        base = ["run", "--now", NOW.isoformat(), "--config", str(s.cfg), "--db", s.url, "--json"]
        first = cli(*base)
        runs = [cli(*base) for _ in range(args.repeat)]
        sec, rss = median_of(runs)
        data = json.loads(runs[-1].stdout)
        tracking = s.query("SELECT count(*) FROM followup_tracking")[0][0]
        print(
            f"idle {dialect} ({args.text_kind} texts): leads={args.leads} tracking={tracking}: "
            "first run "
            f"{first.seconds:.2f}s, then median {sec:.2f}s of "
            f"{[round(r.seconds, 2) for r in runs]}, peak RSS {rss:.0f} MiB, "
            f"sent {data['sent']}, waiting {sum(data['waiting'].values())}; "
            f"CPU {statistics.median(r.cpu for r in runs):.2f}s (first {first.cpu:.2f}s)"
        )


def latency_hook(fake: FakeGraphAPI, latency: float) -> Callable[[], dict[str, float]]:
    """Answer each request ``latency`` s late; returns a function giving the in-flight figures
    (average over the busy period, maximum) and the per-account maximum."""
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "first": 0.0, "last": 0.0, "n": 0, "busy": 0.0}
    per_acct: Counter = Counter()
    per_acct_max: Counter = Counter()

    def hook(call: Any) -> None:
        t0 = time.perf_counter()
        acct = call.ig_user_id
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            state["first"] = state["first"] or t0
            per_acct[acct] += 1
            per_acct_max[acct] = max(per_acct_max[acct], per_acct[acct])
        if latency:
            time.sleep(latency)
        t1 = time.perf_counter()
        with lock:
            state["now"] -= 1
            state["n"] += 1
            state["busy"] += t1 - t0
            state["last"] = max(state["last"], t1)
            per_acct[acct] -= 1

    fake.on_request(hook)

    def figures() -> dict[str, float]:
        span = max(state["last"] - state["first"], 1e-9)
        return {
            "requests": state["n"],
            "avg_in_flight": state["busy"] / span,
            "max_in_flight": state["max"],
            "max_per_account": max(per_acct_max.values(), default=0),
            "span": span,
        }

    return figures


def graph_channel(base_url: str) -> dict[str, Any]:
    return {
        "type": "instagram",
        "api_base": base_url,
        "api_version": "v21.0",
        "window_hours": 24,
        "max_retries": 0,
        "messages_per_hour": 1_000_000,
    }


def duplicates(fake: FakeGraphAPI) -> int:
    seen = Counter((c.ig_user_id, c.recipient_id, c.text) for c in fake.deliveries)
    return sum(n - 1 for n in seen.values() if n > 1)


def bare_client(base_url: str, n: int) -> float:
    """Requests a second a bare keep-alive HTTP client gets from the same fake, one at a time."""
    import requests

    with requests.Session() as s:
        url = f"{base_url}/v21.0/17841000000000001/messages"
        t = time.perf_counter()
        for i in range(n):
            s.post(
                url,
                json={"recipient": {"id": f"bare_{i}"}, "message": {"text": "hi"}},
                headers={"Authorization": "Bearer tok"},
            )
        return n / (time.perf_counter() - t)


def send_runs(
    args: argparse.Namespace, tmp: Path, dialect: str, due: int, runs_at_once: int = 1
) -> tuple[list[float], float, dict[str, float], int, int]:
    """Fresh data and a fresh fake per repetition; ``runs_at_once`` concurrent live runs."""
    times: list[float] = []
    rss = 0.0
    figures: dict[str, float] = {}
    sent = dups = 0
    for _ in range(args.repeat):
        with FakeGraphAPI() as fake:
            figs = latency_hook(fake, args.latency)
            text = config(
                args.accounts,
                graph_channel(fake.base_url),
                **({"max_in_flight": args.workers} if args.workers else {}),
            )
            s = build(dialect, tmp, args.pg, due, due, args.accounts, text)
            base = ["run", "--now", NOW.isoformat(), "--config", str(s.cfg), "--db", s.url]
            base += ["--json", "--budget", "3600", "--wait", "600"]
            started = time.perf_counter()
            procs = [spawn(*base) for _ in range(runs_at_once)]
            done = [finish(p, started) for p in procs]
            for m in done:
                if m.code not in (0,):
                    raise SystemExit(f"run exited {m.code}: {m.stderr.strip()[-2000:]}")
            if runs_at_once > 1:
                for m in done:
                    data = json.loads(m.stdout)
                    print(
                        f"#   run {data['run_id']}: {m.seconds:.2f}s, CPU {m.cpu:.2f}s, sent "
                        f"{data['sent']}, skipped {data['skipped']}, left to other runs "
                        f"{len(data.get('left_to_other_runs') or [])}",
                        file=sys.stderr,
                    )
            times.append(max(m.seconds for m in done))
            rss = max(rss, *(m.rss_mib for m in done))
            figures = figs() | {"cpu": sum(m.cpu for m in done)}
            sent = len(fake.deliveries)
            dups = duplicates(fake)
    return times, rss, figures, sent, dups


def cmd_send(args: argparse.Namespace, tmp: Path) -> None:
    """A real run sending --due messages through the loopback fake."""
    with FakeGraphAPI() as fake:
        bare = bare_client(fake.base_url, 2000)
    print(f"bare HTTP client against the fake: {bare:.0f} req/s (one connection, sequential)")
    for dialect in stores(args):
        times, rss, figs, sent, dups = send_runs(args, tmp, dialect, args.due)
        sec = statistics.median(times)
        print(
            f"send {dialect}: due={args.due} accounts={args.accounts} latency={args.latency}s: "
            f"median {sec:.2f}s of {[round(x, 2) for x in times]} (whole process: "
            f"{sent / sec:.0f} msg/s), sending {figs['span']:.2f}s first to last request of the "
            f"last run: {sent / figs['span']:.0f} msg/s = {sent / figs['span'] / bare:.0%} of "
            f"bare, peak RSS {rss:.0f} MiB, "
            f"sent {sent}, duplicates {dups}, avg in flight {figs['avg_in_flight']:.1f}, "
            f"run process CPU {figs['cpu']:.2f}s ({1000 * figs['cpu'] / max(sent, 1):.2f} ms/msg)"
        )


def cmd_inflight(args: argparse.Namespace, tmp: Path) -> None:
    """Requests in flight at a given API latency, many accounts with a few due each."""
    for dialect in stores(args):
        due = args.accounts * args.per_account
        times, rss, figs, sent, dups = send_runs(args, tmp, dialect, due)
        print(
            f"inflight {dialect}: {args.accounts} accounts x {args.per_account} due, "
            f"latency {args.latency}s: avg in flight {figs['avg_in_flight']:.1f}, "
            f"max {figs['max_in_flight']:.0f}, max per account {figs['max_per_account']:.0f}; "
            f"median run {statistics.median(times):.2f}s, sent {sent}, duplicates {dups}, "
            f"peak RSS {rss:.0f} MiB"
        )


def cmd_scaleout(args: argparse.Namespace, tmp: Path) -> None:
    """N live runs at once on one Postgres vs one run: speed-up and duplicates."""
    one, _, figs1, sent1, _ = send_runs(args, tmp, "postgres", args.due, 1)
    many, rss, figs, sent, dups = send_runs(args, tmp, "postgres", args.due, args.runs)
    t1, tn = statistics.median(one), statistics.median(many)
    print(
        f"scaleout postgres: due={args.due} accounts={args.accounts} latency={args.latency}s: "
        f"1 run {t1:.2f}s ({sent1} sent), {args.runs} runs {tn:.2f}s ({sent} sent): "
        f"{t1 / tn:.2f}x one run, duplicates {dups}, peak RSS {rss:.0f} MiB; "
        f"CPU 1 run {figs1['cpu']:.2f}s, {args.runs} runs {figs['cpu']:.2f}s in all "
        f"({figs['cpu'] / args.runs:.2f}s each); avg in flight 1 run "
        f"{figs1['avg_in_flight']:.1f}, {args.runs} runs {figs['avg_in_flight']:.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, accounts: int) -> None:
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--pg", default=os.environ.get("FOLLOWUP_TEST_PG", PG))
        p.add_argument("--tmp", type=Path, default=None)
        p.add_argument("--accounts", type=int, default=accounts)
        p.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")

    p = sub.add_parser("dryrun")
    common(p, 10)
    p.add_argument("--leads", type=int, default=100_000)
    p.add_argument("--due", type=int, default=100_000)
    p.add_argument("--text", action="store_true", help="without --json (the table)")
    p.add_argument(
        "--warm",
        action="store_true",
        help="one live run with --limit 0 first, untimed (what the cron runs leave behind)",
    )
    p = sub.add_parser("idle")
    common(p, 10)
    p.add_argument("--leads", type=int, default=1_000_000)
    p.add_argument(
        "--text-kind",
        choices=tuple(TEXTS),
        default="ascii",
        help="every lead's last message: ascii 'how much?', accented '¿cuánto cuesta el "
        "envío? 😊' (neither an opt-out)",
    )
    for name, accounts, due in (("send", 4, 2000), ("inflight", 50, 0), ("scaleout", 50, 800)):
        p = sub.add_parser(name)
        common(p, accounts)
        p.add_argument("--due", type=int, default=due)
        p.add_argument("--latency", type=float, default={"send": 0.0}.get(name, 0.15))
        p.add_argument(
            "--workers",
            type=int,
            default=0,
            help="settings.max_in_flight (default: the config default)",
        )
        if name == "inflight":
            p.add_argument("--per-account", type=int, default=20)
        if name == "scaleout":
            p.add_argument("--runs", type=int, default=4)
            p.set_defaults(latency=0.05)
    args = ap.parse_args(argv)
    commands = {
        "dryrun": cmd_dryrun,
        "idle": cmd_idle,
        "send": cmd_send,
        "inflight": cmd_inflight,
        "scaleout": cmd_scaleout,
    }
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
        commands[args.cmd](args, args.tmp)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            commands[args.cmd](args, Path(tmp))


if __name__ == "__main__":
    main()
