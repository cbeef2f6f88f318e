"""The lead table as the tool reads it: its usable columns, the candidate leads
of an account (the SQL prefilter), a lead's row read again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..leadcolumns import OPTIONAL_LEAD_COLUMNS, REQUIRED_LEAD_COLUMNS
from ..redact import redact
from ..rules import keyword_like_patterns
from .queries import ALWAYS, Sql, ident
from .rows import _chunks


@lru_cache(maxsize=64)
def _select_list(present: tuple[str, ...]) -> Sql:
    return Sql(
        ", ".join(
            ident(f"l.{c}") if c in present else f"NULL AS {ident(c)}"
            for c in REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
        )
    )


class LeadQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # ----------------------------------------------------------- lead table
    def lead_columns(self) -> tuple[str, ...]:
        """The lead table's usable columns; StoreConfigError when it is missing or lacks some."""
        from ..errors import StoreConfigError

        if self._lead_columns is None:
            cols = self._table_columns(self.lead_table)
            if cols is None:
                raise StoreConfigError(
                    f"{self.describe()}: no table or view {self.lead_table!r}; create it (columns "
                    f"in the README) or set settings.lead_table in sequences.yaml"
                )
            missing = [c for c in REQUIRED_LEAD_COLUMNS if c not in cols]
            if missing:
                raise StoreConfigError(
                    f"{self.describe()}: table {self.lead_table!r} lacks column(s) "
                    f"{', '.join(missing)}; see the README for the lead-store columns"
                )
            wanted = REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
            self._lead_columns = tuple(c for c in wanted if c in cols)
        return self._lead_columns

    def _select_list(self) -> Sql:
        """The lead columns as ``l.<column>``, NULL for those the table lacks."""
        return _select_list(self.lead_columns())

    def describe(self) -> str:
        return redact(self.url) or self.url

    has_census = False  # candidate_census (Postgres)

    def candidate_leads(
        self,
        account_id: str,
        min_score: int,
        max_score: int,
        after_id: Any = "",
        page: int = 1000,
        keywords: Sequence[str] = (),
        *,
        now: datetime | None = None,
        config: str | None = None,
        new_due_before: datetime | None = None,
        among: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """One page (by id) of an account's leads that may be due; the SQL prefilter.

        With ``now`` (and the ``config`` digest), work in proportion to what is due: an
        active enrollment is left out while the next-due time a run stored for it (under
        this config) is still ahead and nothing terminal happened to the lead (a reply, a
        conversion, a score out of range, an opt-out); a lead in no sequence is left out
        when we wrote to it after ``new_due_before`` (no step can be due yet).

        Conservative: it keeps every lead the decision function could act on (including
        rows with unparseable values, so they are reported) and drops the rest: other
        accounts, out-of-range scores, converted, opted out, the lead wrote last, and
        leads whose current silence an ended enrollment already covered. A lead not yet
        opted out whose last message may hold an opt-out ``keyword`` is always kept, even
        when it wrote last, so its "stop" is recorded at once (the decision function checks
        whole words; this is a coarse, case-folded LIKE).

        ``among``: only these lead ids (a page of what ``candidate_census`` found), instead
        of the page after ``after_id``.
        """
        params: dict[str, Any] = {
            "account_id": account_id,
            "min_score": min_score,
            "max_score": max_score,
            "after_id": after_id,
            "page": page,
        }
        col = self._lead_terms()
        keyword = self._keyword_term(col["last_inbound_text"], keywords, params)
        if now is not None:
            params.update(now=now, config=config or "", new_due=new_due_before or now)
        lid = self._lid()
        if among is not None:
            params["among"] = list(among)
            rows = f"{lid} = ANY(CAST(:among AS text[]))"
        elif after_id is not None and after_id != "":
            rows = f"{lid} > :after_id"
        else:
            rows = "l.id IS NOT NULL"
        return self.query(self._candidate_sql(col, keyword, rows, due=now is not None), params)

    def _candidate_sql(self, col: dict[str, str], keyword: str, rows: str, due: bool) -> Sql:
        """The named query ``candidate_leads`` over ``rows`` of the account, filled in."""
        lid, cols = self._lid(), self._candidate_columns(col)
        due_parts = {"enrolled_due": ALWAYS, "new_due": ALWAYS}
        if due:
            due_parts = {
                "enrolled_due": self.q("candidate_enrolled_due", lid=lid, **cols),
                "new_due": self.q("candidate_new_due"),
            }
        return self.q(
            "candidate_leads",
            select=self._select_list(),
            leads=self.leads,
            lid=lid,
            rows=Sql(rows),
            keyword=Sql(keyword),
            **cols,
            **due_parts,
            **self._score_parts(col),
        )

    def _score_parts(self, col: dict[str, str]) -> dict[str, Sql]:
        """The dialect's parts of ``candidate_leads`` about a garbage score (Postgres:
        ``{odd_score}``; SQLite asks each value's type in the query itself)."""
        return {}

    def _candidate_columns(self, col: dict[str, str]) -> dict[str, Sql]:
        """The lead columns the candidate queries compare, as they compare them."""
        return {k: Sql(col[k]) for k in ("score", "converted_at", "status", "last_inbound_at")}

    def _lead_terms(self) -> dict[str, str]:
        """Each lead column as the candidate queries name it: ``l.<column>``, or NULL."""
        present = set(self.lead_columns())
        return {
            c: (f"l.{c}" if c in present else "NULL")
            for c in REQUIRED_LEAD_COLUMNS + OPTIONAL_LEAD_COLUMNS
        }

    def _keyword_term(self, text: str, keywords: Sequence[str], params: dict[str, Any]) -> str:
        """The candidate queries' keyword term: the last message may hold one of the opt-out
        ``keywords`` and the lead is not opted out yet (its patterns added to ``params``)."""
        patterns = keyword_like_patterns(keywords, self.keyword_like_exact)
        if text == "NULL" or not patterns:
            return "1 = 0"
        for i, pattern in enumerate(patterns):
            params[f"kw{i}"] = pattern
        likes = [self._keyword_like(text, len(patterns), params)]
        beyond = self._keyword_beyond_lower(text, tuple(keywords), len(patterns), params)
        if beyond is not None:
            likes.append(beyond)
        return (
            f"(({' OR '.join(likes)}) "
            f"AND NOT EXISTS (SELECT 1 FROM followup_optouts o2 WHERE o2.lead_id = {self._lid()}))"
        )

    def sample_leads(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` raw lead rows, any ones (`sequences check --db` measures templates
        and attributes on them; unparsed, so bad rows are only skipped there)."""
        sql = self.q("leads_sample", select=self._select_list(), leads=self.leads)
        return self.query(sql, {"n": limit})

    def page_key(self, lead_id: Any) -> Any:
        """What the next candidate page starts after, given the last row's id."""
        return str(lead_id)

    def leads_without_id(self, account_id: str) -> int:
        """An account's lead rows whose id is NULL: never candidates (nothing could track
        them), counted so that the run names them."""
        rows = self.query(self.q("leads_without_id", leads=self.leads), {"a": account_id})
        return int(rows[0]["n"])

    def person_rows(
        self, account_id: str | None, recipient: str | None = None
    ) -> list[dict[str, Any]]:
        """The rows (id, recipient_id, last_inbound_at) of the account's persons held by more
        than one lead row; with ``recipient``, that person's rows, however many
        (``person_inbound``)."""
        inbound = self._lead_column("last_inbound_at")
        if recipient is None:
            pairs = self.query(
                self.q("person_pairs_of_account", leads=self.leads), {"a": account_id}
            )
            pairs = [p for p in pairs if p["r"] is not None and str(p["r"]).strip()]
            if not pairs:
                return []
            if any(int(p["n"]) > 2 for p in pairs):
                sql = self.q("person_rows_of_account", leads=self.leads, inbound_at=inbound)
                return self.query(sql, {"a": account_id})
            return self.lead_rows([str(x) for p in pairs for x in (p["lo"], p["hi"])])
        sql = self.q("person_rows_of_recipient", leads=self.leads, inbound_at=inbound)
        return self.query(sql, {"a": account_id, "r": recipient.strip()})

    def lead_row(self, lead_id: str) -> dict[str, Any] | None:
        sql = self.q("lead_row", select=self._select_list(), leads=self.leads)
        rows = self.query(sql, {"id": lead_id})
        return rows[0] if rows else None

    def lead_rows(self, lead_ids: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._lead_id_in(chunk)
            sql = self.q("lead_rows", select=self._select_list(), leads=self.leads, ids=where)
            out.extend(self.query(sql, names))
        return out
