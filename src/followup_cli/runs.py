"""The runs record: every ``followup run`` that starts leaves a row in ``followup_runs``,
whatever its exit code (0, 3, and also 2, 75 and 1, which stop before the engine), and a
run ``--on-schedule`` takes its slot in ``followup_slots`` once.

Plain functions over a store (both dialects); ``status`` and the metrics read from here.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .store.base import SqlStore, actor, nothing_to_put_back, retried
from .store.queries import NULL, ident

SLOT_MIGRATION = "0005_run_slots"


def has_runs_table(store: SqlStore) -> bool:
    return "0001_initial" not in store.pending_migrations()


def has_slots(store: SqlStore) -> bool:
    return SLOT_MIGRATION not in store.pending_migrations()


def claim_slot(store: SqlStore, slot_key: str, run_id: str, at: datetime) -> bool:
    """Take a slot for this run; False when another run (any host, any process) took it."""

    def claim() -> int:
        with store.transaction():
            return store.execute(store.q("slot_claim"), {"s": slot_key, "r": run_id, "at": at})

    # one conditional statement: run again on a conflict (``_again``)
    return _again(claim, "slot claim") > 0


def release_slot(store: SqlStore, slot_key: str, run_id: str) -> None:
    """Give a slot back (the run could not start, e.g. another run held the lock): the next
    tick tries it again."""

    def release() -> None:
        with store.transaction():
            store.execute(store.q("slot_release"), {"s": slot_key, "r": run_id})

    _again(release, "slot release")


def slot_taken_by(store: SqlStore, slot_key: str) -> str | None:
    rows = store.query(store.q("slot_taken_by"), {"s": slot_key})
    return rows[0]["run_id"] if rows else None


def record(
    store: SqlStore,
    run_id: str,
    *,
    started: datetime,
    finished: datetime,
    now: datetime | None,
    exit_code: int,
    slot: str | None,
    summary: dict[str, Any] | None,
) -> None:
    """Finish this run's row with its final exit code and slot; insert the row when the
    run stopped before the engine wrote one (exit 2, 75, 1)."""
    slot_col = has_slots(store)
    _again(
        lambda: _record_tx(
            store, run_id, started, finished, now, exit_code, slot, summary, slot_col
        ),
        "run record",
    )


def _again(work: Callable[[], Any], what: str) -> Any:
    """``work``: one whole transaction on the runs' rows, its writes conditional on the rows
    as it reads them, nothing outside it: a conflict with another writer (40P01, 40001; an
    erasure scrubbing run notes) rolled it back whole, so it runs again (``retried``)."""
    return retried(work, nothing_to_put_back, what)


def _record_tx(
    store: SqlStore,
    run_id: str,
    started: datetime,
    finished: datetime,
    now: datetime | None,
    exit_code: int,
    slot: str | None,
    summary: dict[str, Any] | None,
    slot_col: bool,
) -> None:
    with store.transaction():
        rows = store.query(store.q("run_summary"), {"r": run_id})
        if rows:
            merged: dict[str, Any] = {}
            if rows[0]["summary"]:
                try:
                    merged = json.loads(rows[0]["summary"])
                except ValueError:
                    merged = {}
            merged.update(summary or {})
            merged["exit_code"] = exit_code
            store.execute(
                store.q("run_record_finish"),
                {"w": finished, "c": exit_code, "s": json.dumps(merged, default=str), "r": run_id},
            )
        else:
            _insert_run(store, run_id, started, finished, now, exit_code, summary)
        if slot_col:  # a store from before 0005_run_slots has no slot column
            store.execute(store.q("run_set_slot"), {"slot": slot, "r": run_id})


def _insert_run(
    store: SqlStore,
    run_id: str,
    started: datetime,
    finished: datetime,
    now: datetime | None,
    exit_code: int,
    summary: dict[str, Any] | None,
) -> None:
    """The row of a run that stopped before the engine wrote one."""
    store.execute(
        store.q("run_record_insert"),
        {
            "r": run_id,
            "h": socket.gethostname(),
            "p": os.getpid(),
            "a": actor(),
            "st": started,
            "w": finished,
            "n": now or started,
            "c": exit_code,
            "s": json.dumps({**(summary or {}), "exit_code": exit_code}, default=str),
        },
    )


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    raw = row.get("summary")
    try:
        row["summary"] = json.loads(raw) if raw else {}
    except ValueError:
        row["summary"] = {}
    return row


def runs(store: SqlStore, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs first, summaries decoded."""
    slot = ident("slot") if has_slots(store) else NULL
    return [_decode(r) for r in store.rows(store.q("runs_newest", slot=slot), {"n": limit})]


def last_success(store: SqlStore) -> dict[str, Any] | None:
    """The newest run that finished with exit 0."""
    slot = ident("slot") if has_slots(store) else NULL
    rows = store.rows(store.q("run_last_success", slot=slot))
    return _decode(rows[0]) if rows else None


__all__ = [
    "claim_slot",
    "release_slot",
    "slot_taken_by",
    "record",
    "runs",
    "last_success",
    "has_runs_table",
    "has_slots",
]
