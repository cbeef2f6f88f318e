"""A transaction the database aborted for a conflict with another writer (40P01 deadlock,
40001 serialization: rolled back whole) is run again, a bounded number of times, with what
it changed in memory put back first; any other database error is raised at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from followup_cli.errors import StoreError
from followup_cli.store import base
from followup_cli.store.base import CONFLICT_ATTEMPTS, put_back, retried


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.time, "sleep", lambda s: None)


def _work(failures: list[StoreError], done: list[str]):  # type: ignore[no-untyped-def]
    def work() -> str:
        done.append("try")
        if failures:
            raise failures.pop(0)
        return "ok"

    return work


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_conflict_runs_the_transaction_again_after_putting_back_its_counts(
    sqlstate: str,
) -> None:
    done: list[str] = []
    resets: list[int] = []
    failures = [StoreError("deadlock detected", sqlstate)]
    assert retried(_work(failures, done), lambda: resets.append(1), "t") == "ok"
    assert done == ["try", "try"] and resets == [1]


def test_a_conflict_met_every_time_is_raised_after_the_last_attempt() -> None:
    done: list[str] = []
    failures = [StoreError("deadlock detected", "40P01") for _ in range(CONFLICT_ATTEMPTS + 1)]
    with pytest.raises(StoreError) as exc:
        retried(_work(failures, done), lambda: None, "t")
    assert exc.value.conflict and len(done) == CONFLICT_ATTEMPTS


@pytest.mark.parametrize("sqlstate", [None, "23505", "57014", "08006"])
def test_any_other_database_error_is_raised_at_once(sqlstate: str | None) -> None:
    done: list[str] = []
    with pytest.raises(StoreError):
        retried(_work([StoreError("boom", sqlstate)], done), lambda: None, "t")
    assert done == ["try"]


def test_the_line_of_a_conflict_says_it_was_rolled_back_and_to_run_again() -> None:
    pytest.importorskip("psycopg")
    import psycopg

    from followup_cli.store.postgres import _store_error

    class Deadlock(psycopg.errors.DeadlockDetected):
        pass

    err = _store_error("postgresql://h/db: deadlock detected", Deadlock("deadlock detected"))
    assert err.conflict and err.sqlstate == "40P01"
    assert "\n" not in str(err) and "rolled back whole: run the command again" in str(err)
    plain = _store_error("postgresql://h/db: boom", psycopg.errors.UniqueViolation("boom"))
    assert not plain.conflict and str(plain) == "postgresql://h/db: boom"


@dataclass
class _Counts:
    new: int = 0
    by: Counter = field(default_factory=Counter)


def test_counts_are_put_back_before_each_attempt_however_many() -> None:
    """Two conflicts, then the transaction commits: its counts once, as if run once."""
    counts = _Counts(new=5, by=Counter(a=1))
    failures = [StoreError("deadlock detected", "40P01") for _ in range(CONFLICT_ATTEMPTS - 1)]

    def work() -> None:
        counts.new += 1
        counts.by["a"] += 1
        if failures:
            raise failures.pop(0)

    retried(work, put_back(counts), "t")
    assert counts == _Counts(new=6, by=Counter(a=2))


def test_only_the_named_counts_are_put_back_when_asked() -> None:
    counts = _Counts(new=5, by=Counter(a=1))
    reset = put_back(counts, only=("by",))
    counts.new, counts.by["a"] = 7, 9
    reset()
    assert counts == _Counts(new=7, by=Counter(a=1))
