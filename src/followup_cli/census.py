"""The candidate census: a run's accounts selected together, before they are planned.

An account's candidate query (``SqlStore.candidate_leads``) probes each of the account's
lead rows for its enrollments, one index probe a row: at a million leads on Postgres, ten
passes of ~0.4 s of server time each, most of a run with nothing due. The census asks the
same question of every account at once (``candidate_census``): the lead table merged with
the enrollments in id order, each read once, the lead ids cut into ranges asked side by side
on two connections (``census_ranges``). An account then reads its candidates a page of ids
at a time, through the same prefilter (``candidate_leads(among=...)``), so a row that
changed since is decided on what it holds then.

Where the store has no census (SQLite, the in-memory store, a lead id that is not text) or
one account is run, each account keeps its own pass. A census that fails leaves the
accounts their passes too: the run is never worse off than without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from queue import SimpleQueue
from typing import Any

from .config import Account, Config
from .store.base import SqlStore

log = logging.getLogger(__name__)

PARTS = 2  # id ranges asked side by side (this machine's two cores: the server's work)


def take_census(
    store: SqlStore,
    helpers: Callable[[int], list[SqlStore]],
    config: Config,
    accounts: Sequence[Account],
    now: datetime,
    digest: str,
    new_due: Callable[[Account, datetime], datetime],
) -> dict[str, list[str]] | None:
    """Each account's candidate lead ids (every account of ``accounts`` a key), or None
    when the accounts should each run their own pass. ``helpers(n)``: up to ``n`` more
    connections, closed here."""
    try:  # a lead table it cannot read: the accounts' own passes meet (and name) that
        if len(accounts) < 2 or not store.has_census:
            return None
    except Exception:  # noqa: BLE001
        return None
    groups: dict[tuple[str, ...], list[tuple[str, int, int, datetime]]] = {}
    for account in accounts:  # one census per keyword list (accounts may override it)
        st = config.settings_for(account)
        groups.setdefault(tuple(st.all_optout_keywords), []).append(
            (account.id, st.min_score, st.max_score, new_due(account, now))
        )
    try:
        ranges = store.census_ranges(PARTS)
        asks = [(kw, group, r) for kw, group in groups.items() for r in ranges]
        found = _ask(store, helpers(min(PARTS, len(asks)) - 1), asks, now, digest)
    except Exception as exc:  # noqa: BLE001 - the accounts' own passes still answer
        log.info("candidate census failed, each account selects its own: %s", exc)
        return None
    out: dict[str, list[str]] = {a.id: [] for a in accounts}
    for part in found:
        for account_id, ids in part.items():
            out.setdefault(account_id, []).extend(ids)
    return out


def _ask(
    store: SqlStore,
    more: list[SqlStore],
    asks: list[tuple[tuple[str, ...], list[tuple[str, int, int, datetime]], Any]],
    now: datetime,
    digest: str,
) -> list[dict[str, list[str]]]:
    """The census statements, on ``store`` and the ``more`` connections side by side."""
    free: SimpleQueue[SqlStore] = SimpleQueue()
    for s in (store, *more):
        free.put(s)

    def one(ask: tuple[tuple[str, ...], list[tuple[str, int, int, datetime]], Any]) -> Any:
        keywords, group, ids = ask
        s = free.get()
        try:
            return s.candidate_census(group, keywords, now, digest, ids)
        finally:
            free.put(s)

    try:
        if not more:
            return [one(a) for a in asks]
        with ThreadPoolExecutor(max_workers=1 + len(more), thread_name_prefix="census") as pool:
            return list(pool.map(one, asks))
    finally:
        for s in more:
            s.close()
