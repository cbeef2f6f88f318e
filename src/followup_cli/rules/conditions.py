"""Trigger conditions (``field op value``, ``any``/``all``) held against a lead."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..config import Condition, Sequence
from ..models import Lead, parse_time

_NUMBER = (int, float)  # a tuple: ``int | float`` would build a union at every call


def _num(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, _NUMBER):
        return v
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return v
    return v


def _time(v: Any) -> datetime | None:
    """A time to compare with a time column: the column's own, or ISO 8601 text (UTC when
    no offset is given); None for anything else."""
    if isinstance(v, datetime):
        return v
    try:
        return parse_time(v) if isinstance(v, str) else None
    except ValueError:
        return None


def _cmp(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        return False
    a, b = _num(a), _num(b)
    if isinstance(a, datetime) or isinstance(b, datetime):
        a, b = _time(a), _time(b)  # a time column and ISO text: compared as times
        if a is None or b is None:
            return False
    try:
        if op == "gt":
            return a > b
        if op == "gte":
            return a >= b
        if op == "lt":
            return a < b
        if op == "lte":
            return a <= b
    except TypeError:  # a text and a number (or a list...): no order, no match
        return False
    return False


def _eq(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return _num(a) == _num(b) and a is not None and b is not None


def condition_holds(cond: Condition, lead: Lead) -> bool:
    if cond.any is not None:
        return any(condition_holds(c, lead) for c in cond.any)
    if cond.all is not None:
        return all(condition_holds(c, lead) for c in cond.all)
    value = lead.value(cond.field or "")
    op, target = cond.op, cond.value
    if op == "eq":
        return _eq(value, target)
    if op == "ne":
        return not _eq(value, target)
    if op == "in":
        return any(_eq(value, t) for t in target)
    if op == "not_in":
        return not any(_eq(value, t) for t in target)
    if op == "between":
        return _cmp(value, target[0], "gte") and _cmp(value, target[1], "lte")
    if op in ("gt", "gte", "lt", "lte"):
        return _cmp(value, target, op)
    if op == "exists":
        want = True if target is None else bool(target)
        present = value is not None and value != ""
        return present == want
    if op == "contains":
        if value is None:
            return False
        if isinstance(value, list | tuple | set):
            return any(_eq(v, target) for v in value)
        return str(target).lower() in str(value).lower()
    return False


def trigger_holds(sequence: Sequence, lead: Lead) -> bool:
    """Every condition of the sequence's trigger holds (``condition_holds``, each compiled
    once a sequence: a run asks for every lead it decides)."""
    hit = _TRIGGERS.get(id(sequence))
    if hit is None or hit[0] is not sequence:
        if len(_TRIGGERS) >= 1024:
            _TRIGGERS.clear()
        hit = _TRIGGERS[id(sequence)] = (sequence, tuple(map(_compiled, sequence.trigger)))
    for holds in hit[1]:
        if not holds(lead):
            return False
    return True


# By sequence (kept alive here, so that its id is not reused): its trigger's predicates.
_TRIGGERS: dict[int, tuple[Sequence, tuple[Callable[[Lead], Any], ...]]] = {}


def _compiled(cond: Condition) -> Callable[[Lead], Any]:
    """A predicate that answers what ``condition_holds(cond, lead)`` answers, with the
    condition's shape, field and operands looked at once: a column's ``between``, ``eq``
    and ``in`` (what triggers use most) without the walk through the operators; anything
    else (a nested ``any``/``all``, an attribute, an operand it cannot use) is
    ``condition_holds`` itself. A column is read as ``Lead.value`` reads it."""
    field, op, target = cond.field or "", cond.op, cond.value
    generic: Callable[[Lead], Any] = lambda lead: condition_holds(cond, lead)  # noqa: E731
    if cond.any is not None or cond.all is not None or field.startswith("attributes."):
        return generic
    if op == "between":
        if not isinstance(target, list | tuple) or len(target) < 2:
            return generic  # raises (or not) as condition_holds does, lead by lead
        low, high = target[0], target[1]
        if low is None or high is None:
            return lambda lead: False
        low, high = _num(low), _num(high)
        if isinstance(low, str) or isinstance(high, str):
            return generic  # a text bound: a text column, or ISO times for a time column

        def between(lead: Lead) -> bool:
            value = getattr(lead, field, None)
            if value is None:
                return False
            value = _num(value)
            try:  # as _cmp: a TypeError is False, for gte and lte alike
                return value >= low and value <= high
            except TypeError:
                return False

        return between
    if op == "eq":
        return lambda lead: _eq(getattr(lead, field, None), target)
    if op == "in":

        def is_in(lead: Lead) -> bool:
            value = getattr(lead, field, None)
            return any(_eq(value, t) for t in target)

        return is_in
    return generic


def describe_conditions(conditions: tuple[Condition, ...]) -> list[str]:
    out = []
    for c in conditions:
        if c.any is not None or c.all is not None:
            inner = " | ".join(describe_conditions(c.any or ())) if c.any is not None else None
            out.append(
                f"any of ({inner})"
                if inner
                else f"all of ({', '.join(describe_conditions(c.all or ()))})"
            )
        else:
            value = "" if c.op == "exists" and c.value is None else f" {c.value!r}"
            out.append(f"{c.field} {c.op}{value}")
    return out
