"""The SQLite candidate prefilter's keyword terms: LIKE patterns behind their gates, and the
texts LIKE cannot fold (non-ASCII, blobs) handed to the rules' own normalisation through
the ``followup_keyword`` SQL function."""

from __future__ import annotations

from typing import Any

from ..rules import KEYWORD_SEPARATOR, has_optout_keyword
from ..rules.keywords import keyword_like_gates


def _keyword(raw: Any, keywords: str) -> int:
    """SQL ``followup_keyword(CAST(text AS BLOB), keywords)``: 1 when ``keyword_optout``
    finds one of the keywords (joined by ``KEYWORD_SEPARATOR``) in the text. Never raises:
    an error here would fail the whole query; a text it cannot read stays a candidate (1),
    for the run to decide it or name the row."""
    try:
        if raw is None or not keywords:
            return 0
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return int(has_optout_keyword(text, keywords))
    except Exception:  # noqa: BLE001 - in doubt, a candidate
        return 1


class SQLiteCandidates:
    """Mixed into ``SQLiteStore`` (before ``SqlStore``, whose generic versions these
    replace)."""

    # LIKE folds ASCII case alone, whatever the locale, and every text with a non-ASCII
    # character is matched by the rules' own normalisation (_keyword_beyond_lower): the
    # patterns can keep their vowels, which "para", "trabajo" or "price" would pass
    keyword_like_exact = True

    def _keyword_like(self, text: str, patterns: int, params: dict[str, Any]) -> str:
        # SQLite's LIKE already ignores ASCII case, all that its lower() folds, and the
        # patterns are lower case: lower() once for each pattern was half the prefilter's
        # time at a million leads (the tool never sets PRAGMA case_sensitive_like). The
        # patterns that share a literal are asked behind it (keyword_like_gates): the same
        # texts kept, with 19 LIKEs instead of 44 for a text that holds no keyword.
        # ESCAPE only when a pattern holds the escape character (a keyword with %, _ or \):
        # without one the pattern matches the same texts, and a two-argument LIKE costs
        # less (the ten account passes at a million leads: ~0.15 s of 2.4 s CPU).
        pats = [params[f"kw{i}"] for i in range(patterns)]
        groups = keyword_like_gates(tuple(pats))
        escaped = any("\\" in p for p in pats + [g for g, _ in groups if g is not None])
        esc = " ESCAPE '\\'" if escaped else ""
        terms = []
        for g, (gate, members) in enumerate(groups):
            likes = " OR ".join(f"{text} LIKE :kw{i}{esc}" for i in members)
            if gate is None:
                terms.append(likes)
            else:
                params[f"kwg{g}"] = gate
                terms.append(f"({text} LIKE :kwg{g}{esc} AND ({likes}))")
        return " OR ".join(terms)

    def _keyword_beyond_lower(
        self, text: str, keywords: tuple[str, ...], patterns: int, params: dict[str, Any]
    ) -> str | None:
        # Text with a non-ASCII character (more bytes than characters; a NUL, after which
        # length() and LIKE stop, too) and a blob (length() counts its bytes, and the lead
        # parser decodes it), matched in Python by the rules' own normalisation; as bytes,
        # so that invalid UTF-8 arrives as replacement characters instead of failing the
        # query. (Asked before the LIKEs, in a CASE, it cost an ASCII text 0.65 us more.)
        params["kw_all"] = KEYWORD_SEPARATOR.join(keywords)
        return (
            f"((length({text}) <> length(CAST({text} AS BLOB)) OR typeof({text}) = 'blob') "
            f"AND followup_keyword(CAST({text} AS BLOB), :kw_all))"
        )
