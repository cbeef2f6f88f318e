"""Trigger conditions (``field op value``, ``any``/``all``) held against a lead."""

from __future__ import annotations

from typing import Any

from ..config import Condition, Sequence
from ..models import Lead


def _num(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return v
    return v


def _cmp(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        return False
    a, b = _num(a), _num(b)
    try:
        if op == "gt":
            return a > b
        if op == "gte":
            return a >= b
        if op == "lt":
            return a < b
        if op == "lte":
            return a <= b
    except TypeError:
        return str(a) > str(b) if op == "gt" else False
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
    return all(condition_holds(c, lead) for c in sequence.trigger)


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
