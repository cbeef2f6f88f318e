"""The Postgres candidate prefilter: which leads may be due, in Postgres's SQL. The lead
columns typed for the candidate queries, the opt-out keywords folded in SQL as the rules fold
them (``keyword_like_exact``), and the census: every account's candidate ids in one scan,
cut into id ranges (``census.py``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..rules import APOSTROPHES, combining_marks
from ..rules.keywords import keyword_like_gates
from .queries import Sql

_TYPED_NULL = {
    "score": "NULL::integer",
    "converted_at": "NULL::timestamptz",
    "last_inbound_at": "NULL::timestamptz",
    "status": "NULL::text",
}


def _typed(col: dict[str, str]) -> dict[str, str]:
    """The candidate queries' lead columns: a typed NULL for one the table lacks, an ENUM
    status as its text (it folds so)."""
    c = {k: (_TYPED_NULL.get(k, v) if v == "NULL" else v) for k, v in col.items()}
    if c["status"] != _TYPED_NULL["status"]:
        c["status"] = f"CAST({c['status']} AS text)"
    return c


def pg_fold_lower(text: str) -> str:
    """SQL for ``text`` NFKD-decomposed and lower-cased in the "C" collation (ASCII alone,
    whatever the database's locale), with the one case fold that NFKD does not give and
    that yields ASCII: ß and ẞ to "ss" (``rules.fold_text`` case-folds). Accents and
    apostrophes are left to the caller."""
    lowered = f'lower(normalize(CAST({text} AS text), NFKD) COLLATE "C")'
    return f"replace(replace({lowered}, 'ß', 'ss'), 'ẞ', 'ss')"


_CLASS_LOCK = threading.Lock()


def _combining_class() -> str:
    """A regular-expression class of every combining mark, as ranges; made once a process
    (the census's threads ask for it at once: one makes it, the other waits)."""
    with _CLASS_LOCK:
        return _combining_ranges()


@lru_cache(maxsize=1)
def _combining_ranges() -> str:
    ranges: list[list[int]] = []
    for ch in combining_marks():
        c = ord(ch)
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "[" + "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges) + "]"


class PostgresCandidates:
    """Mixed into ``PostgresStore`` (before ``SqlStore``, whose generic versions these
    replace): uses its seam (``query``, ``transaction``, ``q``) and its lead terms."""

    @property
    def keyword_like_exact(self) -> bool:  # type: ignore[override]
        """Exact patterns (vowels kept) where every non-ASCII text is folded as the rules
        fold it (``_keyword_beyond_lower``: Postgres 13+, UTF-8); case is then folded in
        the "C" collation, ASCII alone, as the rules fold ASCII text (a Turkish locale's
        lower() would make "QUIT" "quıt")."""
        info = self.conn.info
        return info.server_version >= 130000 and info.parameter_status("server_encoding") == "UTF8"

    def _lower(self, text: str) -> str:
        return (
            f'lower(CAST({text} AS text) COLLATE "C")'
            if self.keyword_like_exact
            else f"lower({text})"
        )

    def _keyword_like(self, text: str, patterns: int, params: dict[str, Any]) -> str:
        # lower() once a row and one LIKE ANY over the patterns (LIKE's default escape is
        # the backslash): a third of the time of one lower() LIKE ... ESCAPE per pattern.
        # Behind the gates (keyword_like_gates: each group's shared literal, or the pattern
        # alone): a text that matches a pattern matches its group's gate, so "a gate AND a
        # pattern" keeps exactly the texts "a pattern" keeps, and a text that holds no
        # keyword costs 19 LIKEs instead of 44 (the census's two halves at a million
        # leads: -0.7 s CPU, bench/RESULTS-select.md).
        pats = [params[f"kw{i}"] for i in range(patterns)]
        params["kw_any"] = pats
        low = self._lower(text)
        gates = [g if g is not None else pats[m[0]] for g, m in keyword_like_gates(tuple(pats))]
        if len(gates) >= len(pats):
            return f"{low} LIKE ANY (CAST(:kw_any AS text[]))"
        params["kw_gates"] = gates
        return (
            f"({low} LIKE ANY (CAST(:kw_gates AS text[])) "
            f"AND {low} LIKE ANY (CAST(:kw_any AS text[])))"
        )

    def _keyword_beyond_lower(
        self, text: str, keywords: tuple[str, ...], patterns: int, params: dict[str, Any]
    ) -> str | None:
        if not self.keyword_like_exact:
            # normalize() is Postgres 13+, on a UTF-8 database only: elsewhere every text
            # with a non-ASCII character is kept (the rules decide it), as the coarse
            # patterns cannot see "ＳＴＯＰ", "sto\u0301p" or "SCHLUẞ" (any encoding)
            params["kw_non_ascii"] = "[^\\x01-\\x7f]"
            return f"CAST({text} AS text) ~ :kw_non_ascii"
        # Text with non-ASCII characters only: NFKD (full-width letters and ligatures to
        # ASCII, accents apart), lower() in "C" (ASCII), accents dropped (regexp_replace:
        # translate() with every combining mark is 50 times slower) and typographic
        # apostrophes made plain; folded once a row (OFFSET 0), then the same LIKE patterns.
        params["fold_marks"] = _combining_class()
        params["fold_from"] = APOSTROPHES
        params["fold_to"] = "'" * len(APOSTROPHES)
        folded = (
            f"translate(regexp_replace({pg_fold_lower(text)}, "
            ":fold_marks, '', 'g'), :fold_from, :fold_to)"
        )
        likes = " OR ".join(f"k.f LIKE :kw{i} ESCAPE '\\'" for i in range(patterns))
        return (
            f"(octet_length({text}) <> char_length({text}) "
            f"AND EXISTS (SELECT 1 FROM (SELECT {folded} AS f OFFSET 0) k WHERE {likes}))"
        )

    def _candidate_columns(self, col: dict[str, str]) -> dict[str, Sql]:
        return {k: Sql(v) for k, v in _typed(col).items() if k in _TYPED_NULL}

    def _score_parts(self, col: dict[str, str]) -> dict[str, Sql]:
        """``{odd_score}``: a score the run names as garbage (not an integer, NaN, beyond 64
        bits: ``models._score``), kept by the prefilter whatever the range; only a numeric,
        real or double precision column can hold one."""
        self.lead_columns()  # learns the score column's type
        if not getattr(self, "_fractional_score", False) or col["score"] == "NULL":
            return {"odd_score": Sql("false")}
        s = col["score"]
        return {"odd_score": Sql(f"(abs({s}) >= 9223372036854775808 OR {s} <> trunc({s}))")}

    @property
    def has_census(self) -> bool:
        """A text lead id (``_lid`` keeps the table's own index): the census's ranges and
        id lists compare with it as they are."""
        self.lead_columns()
        return bool(getattr(self, "_text_lead_ids", False))

    def _census_rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The census's rows, planned with merge joins and sorted aggregates when the lead
        table is a plain table (no spill to disk: a quarter less CPU at a million leads,
        bench/RESULTS-select.md); never for a view, whose own joins the settings would
        reach, nor inside a scratch dry run's transaction, which they would outlive."""
        kind = self.query(self.q("lead_table_kind"), {"t": self.lead_table})
        if self.in_scratch or not kind or kind[0]["kind"] not in ("r", "p"):
            return self.query(sql, params)
        with self.transaction():
            self.query(self.q("census_plan"))
            return self.query(sql, params)

    def census_ranges(self, n: int) -> list[tuple[str | None, str | None]]:
        """The lead ids cut into up to ``n`` ranges of about equal size, from the planner's
        histogram of the id column; one unbounded range without one (a view)."""
        cuts: list[str] = []
        if n > 1:
            rows = self.query(self.q("lead_id_cuts"), {"t": self.lead_table, "n": n})
            cuts = sorted({r["cut"] for r in rows if r["cut"] is not None})
        bounds: list[str | None] = [None, *cuts, None]
        return list(zip(bounds[:-1], bounds[1:], strict=True))

    def candidate_census(
        self,
        accounts: Sequence[tuple[str, int, int, datetime]],
        keywords: Sequence[str],
        now: datetime,
        config: str,
        ids: tuple[str | None, str | None] = (None, None),
    ) -> dict[str, list[str]]:
        """The candidate lead ids of each account (``accounts``: id, score range, when a lead
        in no sequence can be due; one keyword list for them all) among the lead ids from
        ``ids[0]`` up to, not including, ``ids[1]``: the leads ``candidate_leads`` keeps."""
        lo, hi = ids
        params: dict[str, Any] = {
            "accounts": [a[0] for a in accounts],
            "min_scores": [a[1] for a in accounts],
            "max_scores": [a[2] for a in accounts],
            "new_dues": [a[3] for a in accounts],
            "config": config,
            "now": now,
            "lo": lo,
            "hi": hi,
        }
        lid = self._lid()
        ranges = [("{lid} >= :lo", lo), ("{lid} < :hi", hi)]
        lead_range = [cond for cond, bound in ranges if bound is not None] or ["l.id IS NOT NULL"]
        enrollment_range = [
            cond.replace("{lid}", "lead_id") for cond, bound in ranges if bound is not None
        ] or ["true"]
        col = self._lead_terms()
        sql = self.q(
            "candidate_census",
            leads=self.leads,
            lid=lid,
            lead_range=Sql(" AND ".join(lead_range).replace("{lid}", lid)),
            enrollment_range=Sql(" AND ".join(enrollment_range)),
            keyword=Sql(self._keyword_term(col["last_inbound_text"], keywords, params)),
            **self._candidate_columns(col),
            **self._score_parts(col),
        )
        out: dict[str, list[str]] = {}
        for row in self._census_rows(sql, params):
            out.setdefault(row["account_id"], []).append(row["id"])
        return out
