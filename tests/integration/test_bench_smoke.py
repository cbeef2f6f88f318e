"""Each benchmark of bench/bench_engine.py (and bench/bench_http.py) at a tiny size, so the
scripts cannot rot.

No timing is asserted (the figures live in bench/RESULTS-engine.md); what is asserted is that
each command runs end to end and that the work it measures really happened (the due leads
planned or sent, once each).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import pg_available

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    if "bench_engine" in sys.modules:
        return sys.modules["bench_engine"]
    spec = importlib.util.spec_from_file_location(
        "bench_engine", ROOT / "bench" / "bench_engine.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_engine"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, monkeypatch) -> str:
    if request.param == "postgres":
        why = pg_available()
        if why:
            pytest.skip(why)
        schema = "bench_" + uuid.uuid4().hex[:10]
        monkeypatch.setenv("BENCH_SCHEMA", schema)
        yield "postgres"
        import psycopg

        with psycopg.connect(os.environ.get("FOLLOWUP_TEST_PG", _bench().PG), autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return
    yield "sqlite"


def run(tmp_path: Path, capsys, *argv: str) -> str:
    _bench().main([*argv, "--repeat", "1", "--tmp", str(tmp_path)])
    return capsys.readouterr().out


def test_dryrun_json_and_text(tmp_path, capsys, store) -> None:
    out = run(tmp_path, capsys, "dryrun", "--leads", "300", "--due", "30", "--store", store)
    assert "would_send 30," in out
    out = run(
        tmp_path, capsys, "dryrun", "--text", "--warm", "--leads", "300", "--due", "30",
        "--store", store,
    )  # fmt: skip
    assert f"dryrun (text) {store}: leads=300 due=30" in out


def test_idle_run_sends_nothing(tmp_path, capsys, store) -> None:
    out = run(tmp_path, capsys, "idle", "--leads", "300", "--store", store)
    assert "sent 0," in out and "tracking=" in out
    out = run(
        tmp_path, capsys, "idle", "--leads", "300", "--store", store, "--text-kind", "accented"
    )
    assert f"idle {store} (accented texts): leads=300" in out and "sent 0," in out


def test_send_sends_each_due_lead_once(tmp_path, capsys, store) -> None:
    out = run(tmp_path, capsys, "send", "--due", "40", "--store", store)
    assert "sent 40, duplicates 0" in out


def test_inflight_measures_concurrency(tmp_path, capsys, store) -> None:
    out = run(
        tmp_path,
        capsys,
        "inflight",
        "--accounts",
        "3",
        "--per-account",
        "2",
        "--latency",
        "0.01",
        "--store",
        store,
    )
    assert "sent 6, duplicates 0" in out and "max per account 1" in out


def test_scaleout_runs_at_once_without_duplicates(tmp_path, capsys, store) -> None:
    if store != "postgres":
        pytest.skip("scale-out is a Postgres figure")
    out = run(
        tmp_path,
        capsys,
        "scaleout",
        "--due",
        "20",
        "--accounts",
        "4",
        "--runs",
        "2",
        "--latency",
        "0.01",
    )
    assert "(20 sent), 2 runs" in out and "duplicates 0" in out


def test_http_clients_each_post_to_the_fake(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_http", ROOT / "bench" / "bench_http.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    figures = mod.main(["--calls", "5", "--repeat", "1"])
    assert set(figures) == {"urllib3", "requests", "sender", "channel"}
    assert "channel" in capsys.readouterr().out
