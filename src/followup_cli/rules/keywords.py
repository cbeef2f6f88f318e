"""Opt-out keywords: text folded as they are compared (case, accents, width, apostrophes),
a keyword found as a whole word or phrase, and the coarse SQL ``LIKE`` patterns the stores'
prefilter uses to keep every lead whose last message may opt out."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain

APOSTROPHES = "\u2019\u2018\u02bc`"  # made plain "'"


# The planes that can hold a combining character: planes 2 and 3 hold CJK ideographs (class
# 0), 4-13 no character in any Unicode version, 15 and 16 private use (class 0 by definition)
# (tests check this Python's). Scanning 3 planes instead of 6 halves the time of the first
# call (~0.07 s CPU, on the way to the first Postgres candidate query of every run).
_ASSIGNED_PLANES = (range(0, 0x20000), range(0xE0000, 0xF0000))


@lru_cache(maxsize=1)
def combining_marks() -> str:
    """Every combining character (what accents decompose into), in code point order."""
    return "".join(filter(unicodedata.combining, map(chr, chain(*_ASSIGNED_PLANES))))


class _FoldTable(dict):
    """For ``str.translate``: a code point -> None (a combining mark: dropped), a plain
    apostrophe (a typographic one), or itself; filled in as characters are met, instead of
    scanning every code point up front (a quarter of a second a process)."""

    def __missing__(self, code: int) -> int | None:
        out = None if unicodedata.combining(chr(code)) else code
        self[code] = out
        return out


_FOLD = _FoldTable(dict.fromkeys(map(ord, APOSTROPHES), ord("'")))


def fold_text(text: str) -> str:
    """``normalize_text`` but for the spacing: NFKC (full-width letters, ligatures),
    case-folded, accents dropped, typographic apostrophes made plain."""
    if text.isascii():  # what the steps below leave of ASCII text, without them
        return text.lower().replace("`", "'")
    t = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return t.translate(_FOLD)


def normalize_text(text: str) -> str:
    """Text as opt-out keywords are compared: NFKC (full-width letters, ligatures), case-folded,
    accents dropped, typographic apostrophes made plain, runs of whitespace one space."""
    return " ".join(fold_text(text).split())


@lru_cache(maxsize=64)
def _keyword_patterns(keywords: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    out = []
    for kw in keywords:
        k = normalize_text(kw)
        if k:
            out.append((kw, re.compile(r"(?<!\w)" + re.escape(k) + r"(?!\w)")))
    return tuple(out)


def keyword_optout(text: str | None, keywords: tuple[str, ...]) -> str | None:
    """The opt-out keyword (as configured) found in an inbound text, as a whole word or
    phrase after ``normalize_text``, or None."""
    if not text:
        return None
    norm = normalize_text(text)
    last = _LAST_ANY[0]
    if last[0] is keywords:  # a run asks with the same tuple for every lead
        anyone = last[1]
    else:
        anyone = any_keyword(_joined(tuple(keywords)))
        _LAST_ANY[0] = (keywords, anyone)
    if anyone is None or anyone.search(norm) is None:  # one pass finds there is none
        return None
    for kw, pattern in _keyword_patterns(tuple(keywords)):
        if pattern.search(norm):
            return kw
    return None


KEYWORD_SEPARATOR = "\x1f"  # between keywords given as one string
# The keywords ``keyword_optout`` was last asked with (that very tuple) and their pattern:
# hashing 48 keywords for the lru_cache was most of its time for a text without any.
_LAST_ANY: list[tuple[object, re.Pattern[str] | None]] = [(None, None)]


@lru_cache(maxsize=64)
def _joined(keywords: tuple[str, ...]) -> str:
    return KEYWORD_SEPARATOR.join(keywords)


@lru_cache(maxsize=64)
def any_keyword(joined: str) -> re.Pattern[str] | None:
    """One pattern for all the keywords (joined by ``KEYWORD_SEPARATOR``) that finds in a
    ``normalize_text`` text what ``keyword_optout`` finds, in one pass (None: no keyword)."""
    words = {normalize_text(k) for k in joined.split(KEYWORD_SEPARATOR)}
    ordered = sorted((w for w in words if w), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")


def has_optout_keyword(text: str | None, joined: str) -> bool:
    """``keyword_optout(text, keywords) is not None``, the keywords joined by
    ``KEYWORD_SEPARATOR`` (the SQLite store's keyword prefilter calls it in SQL for text
    that SQL's ``lower()`` cannot fold)."""
    pattern = any_keyword(joined)
    return bool(text) and pattern is not None and pattern.search(normalize_text(text)) is not None


def keyword_like_pattern(keyword: str, exact: bool = False) -> str | None:
    """A coarse SQL LIKE pattern (``ESCAPE '\\'``) that every text ``keyword_optout`` matches
    with this keyword matches too, as far as SQL's ``lower()`` folds the text (ASCII text;
    the stores look at other text apart, ``_keyword_beyond_lower``): words joined by ``%``
    (any spacing), vowels and non-ASCII letters as ``_`` (accents either way, and a
    locale's ``lower()`` that folds ``I`` to ``ı``). ``exact`` keeps the vowels: for a
    store whose LIKE folds ASCII case alone and that matches every non-ASCII text by the
    rules themselves (SQLite), where ``%b_j_%`` would keep every "trabajo". The store's
    prefilter uses it to keep leads whose last message may opt out."""
    words = normalize_text(keyword).split()
    if not words:
        return None
    wild = "'" if exact else "aeiouy'"  # an ASCII ` folds to '
    out = []
    for w in words:
        chars = []
        for c in w:
            if c in wild or not c.isascii():
                chars.append("_")
            elif c in "%_\\":
                chars.append("\\" + c)
            else:
                chars.append(c)
        out.append("".join(chars))
    return "%" + "%".join(out) + "%"


def _like_words(pattern: str) -> list[list[str | None]]:
    """A ``keyword_like_pattern`` as its words; a word as its characters (None: ``_``)."""
    words: list[list[str | None]] = [[]]
    chars = iter(pattern)
    for c in chars:
        if c == "%":
            words.append([])
        else:
            words[-1].append(next(chars) if c == "\\" else None if c == "_" else c)
    return [w for w in words if w]


def _within(small: list[str | None], big: list[str | None]) -> bool:
    """Every text ``big`` matches (as a LIKE word) contains what ``small`` matches."""
    return any(
        all(a is None or a == b for a, b in zip(small, big[at:], strict=False))
        for at in range(len(big) - len(small) + 1)
    )


def _implies(big: str, small: str) -> bool:
    """Every text the LIKE pattern ``big`` matches, ``small`` matches too: ``small``'s
    words, in order, each inside another of ``big``'s words."""
    left = _like_words(big)
    for word in _like_words(small):
        while left and not _within(word, left[0]):
            left.pop(0)
        if not left:
            return False
        left.pop(0)
    return True


def keyword_like_patterns(keywords: Iterable[str], exact: bool = False) -> tuple[str, ...]:
    """The ``keyword_like_pattern`` of every keyword, less those another one already
    covers (``%n_%m_s%m_ns_j_s%`` matches whatever ``no quiero más mensajes`` matches):
    a text matches one of these exactly when it matches one of all of them. Computed once
    per keyword set (the pruning compares every pair: 11 % of a dry run's samples when the
    candidate query asked for it on each page)."""
    return _like_patterns(tuple(keywords), exact)


@lru_cache(maxsize=64)
def _like_patterns(keywords: tuple[str, ...], exact: bool) -> tuple[str, ...]:
    every = sorted({p for p in (keyword_like_pattern(k, exact) for k in keywords) if p})
    return tuple(
        p
        for p in every
        if not any(q != p and _implies(p, q) and not (_implies(q, p) and q > p) for q in every)
    )


# The shortest literal a LIKE gate may be: "scri", "messag", "mensa", "contact"... (three
# letters, "par" or "des", would let most Spanish texts through the gate).
GATE_MIN = 4


def _literals(pattern: str) -> set[str]:
    """Every run of ``GATE_MIN`` or more literal characters (no ``_``) inside one of the
    pattern's words: whatever text the pattern matches holds each of them, in some case."""
    out: set[str] = set()
    for word in _like_words(pattern):
        runs: list[str] = [""]
        for c in word:
            if c is None:
                runs.append("")
            else:
                runs[-1] += c
        for run in runs:
            for i in range(len(run) - GATE_MIN + 1):
                out.update(run[i:j] for j in range(i + GATE_MIN, len(run) + 1))
    return out


@lru_cache(maxsize=64)
def keyword_like_gates(patterns: tuple[str, ...]) -> tuple[tuple[str | None, tuple[int, ...]], ...]:
    """The patterns in groups behind a gate: (gate pattern, indexes of its patterns), or
    (None, (i,)) for a pattern alone. A gate is a literal that every pattern of its group
    holds, so a text matching one of them matches the gate, and "gate AND (one of them)"
    keeps exactly the texts "one of them" keeps; a text matching no gate costs one LIKE a
    group instead of one a pattern (44 -> 19 LIKEs for the default keywords). Greedy: the
    literal shared by most patterns not grouped yet (the longer on a tie), while it is
    shared by two or more."""
    subs = [_literals(p) for p in patterns]
    left = set(range(len(patterns)))
    groups: list[tuple[str | None, tuple[int, ...]]] = []
    while True:
        count: dict[str, int] = {}
        for i in left:
            for sub in subs[i]:
                count[sub] = count.get(sub, 0) + 1
        best = max(count, key=lambda sub: (count[sub], len(sub), sub), default=None)
        if best is None or count[best] < 2:
            break
        members = tuple(i for i in sorted(left) if best in subs[i])
        escaped = "".join("\\" + c if c in "%_\\" else c for c in best)
        groups.append((f"%{escaped}%", members))
        left -= set(members)
    groups.extend((None, (i,)) for i in sorted(left))
    return tuple(groups)
