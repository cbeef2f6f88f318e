"""Claims left behind by runs that are gone, found at the start of every live run.

A claim is a ``pending`` tracking row, committed before its API call. ``attempted_at`` says
how far its run got: NULL, the run claimed it (in a batch) but surely never handed it to
the API (the mark is committed before the call); set, the message may have gone out.
When the claim's run is gone (its process died on this host, it stopped heartbeating, or
it ended without recording the outcome):

* attempted: the claim becomes ``unknown`` (never resent blindly; an operator resolves
  it), with a ``claim_unknown`` audit row in the same transaction;
* never attempted: the claim is deleted (released), so the next run sends that step once.
  The claim itself was never in the audit log, so its release is not either.

A live run's claims are left alone, attempted or not.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from .clock import wall
from .store.base import SqlStore, nothing_to_put_back, retried

STALE_HEARTBEAT_SECONDS = 300


def recover_stale_claims(store: SqlStore, who: str, now: datetime, run_id: str) -> tuple[int, int]:
    """(claims marked unknown, claims released) among other runs' open claims."""
    host = socket.gethostname()
    marked = released = 0
    for c in store.open_claims():
        if c["run_id"] == run_id:
            continue
        why = _why_gone(c, host)
        if why is None:
            continue
        # Each below is one whole transaction, conditional on the claim as it is then, and
        # nothing outside it: a conflict with another writer (40P01, 40001) rolled it back
        # whole, so it runs again (``retried``) instead of ending the run.
        if c.get("attempted_at") is None:
            # conditional on attempted_at IS NULL still: a run taken for dead that marks it
            # now wins (the delete then does nothing; the next run finds it attempted)
            released += retried(
                partial(_release, store, c["id"]), nothing_to_put_back, "stale claim release"
            )
            continue
        if retried(
            partial(_mark_unknown, store, c, why, who, now, run_id),
            nothing_to_put_back,
            "stale claim",
        ):
            marked += 1
    return marked, released


def _release(store: SqlStore, followup_id: int) -> int:
    """One statement, a transaction of its own: the claim's tracking row, then its lead's
    enrollments (the trigger's), in the one order."""
    return store.release_unattempted(followup_ids=[followup_id])


def _mark_unknown(
    store: SqlStore, c: dict[str, Any], why: str, who: str, now: datetime, run_id: str
) -> bool:
    """One transaction: a run killed in between leaves the claim pending for the next run
    to mark, never an unknown row the audit log does not explain. In the one order: the
    claim's tracking row (then its lead's enrollments, by the trigger), the audit row last."""
    with store.transaction():
        if not store.mark_unknown(c["id"], why, now):
            return False
        detail = {"why": why, "claim_run": c["run_id"]}
        store.audit_followup("claim_unknown", now, who, c, detail, run_id)
    return True


def _why_gone(c: dict[str, Any], host: str) -> str | None:
    """Why the claim's run is taken for gone, or None while it may still be at work."""
    if c.get("finished_at") is not None:
        return "its run ended without recording the outcome"
    if c.get("host") == host and c.get("pid") and not _pid_alive(int(c["pid"])):
        return f"its run (pid {c['pid']}) died during the send"
    if c.get("heartbeat_at") is None or (
        wall() - c["heartbeat_at"] > timedelta(seconds=STALE_HEARTBEAT_SECONDS)
    ):
        return "its run stopped heartbeating during the send"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
