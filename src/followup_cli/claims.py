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
from typing import Any

from .clock import wall
from .store.base import SqlStore

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
        if c.get("attempted_at") is None:
            # conditional on attempted_at IS NULL still: a run taken for dead that marks it
            # now wins (the delete then does nothing; the next run finds it attempted)
            released += store.release_unattempted(followup_ids=[c["id"]])
            continue
        # one transaction: a run killed in between leaves the claim pending for the
        # next run to mark, never an unknown row the audit log does not explain
        with store.transaction():
            if not store.mark_unknown(c["id"], why, now):
                continue
            detail = {"why": why, "claim_run": c["run_id"]}
            store.audit_followup("claim_unknown", now, who, c, detail, run_id)
        marked += 1
    return marked, released


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
