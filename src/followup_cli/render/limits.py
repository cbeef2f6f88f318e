"""The sandbox's bounds: how big a value prints (counted cheaply), and the checks that refuse
an operation, call, filter or format whose result would be over ``MAX_CHARS`` or
``MAX_ITEMS`` before it is built."""

from __future__ import annotations

import re
from typing import Any

from .errors import TemplateLimit

MAX_CHARS = 10_000  # any string, list or printed value a template builds, and its output
MAX_ITEMS = 1_000  # range(), batch(), slice()
MAX_STEPS = 50_000  # loop steps, calls, filters and operators in one rendering
MAX_POWER_BITS = 4_000  # 2 ** 4000 is fine, 10 ** 10 ** 8 is not


def size_of(obj: Any, limit: int = MAX_CHARS) -> int:
    """About how many characters ``obj`` prints as; stops counting once over ``limit``
    (so it is cheap on anything, however big or deeply shared)."""
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str | bytes):
            total += len(o)
        elif isinstance(o, bool) or o is None:
            total += 5
        elif isinstance(o, int):
            total += o.bit_length() // 3 + 1
        elif isinstance(o, list | tuple | set | frozenset | dict):
            total += 2 + 2 * len(o)
            if total > limit:
                return total
            if isinstance(o, dict):
                stack.extend(o.keys())
                stack.extend(o.values())
            else:
                stack.extend(o)
        else:
            total += 24  # numbers, dates, records, undefined: small
        if total > limit:
            return total
    return total


def too_big(what: str, limit: int = MAX_CHARS) -> TemplateLimit:
    return TemplateLimit(
        f"{what} would be over {limit} characters; a template may not build more", "too_long"
    )


def check_size(value: Any, what: str = "a value") -> Any:
    if size_of(value) > MAX_CHARS:
        raise too_big(what)
    return value


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        n = as_int(times)
        if n is not None and isinstance(seq, str | bytes | list | tuple):
            if n > 0 and size_of(seq) * n > MAX_CHARS:
                raise too_big("repeating it")
    a, b = as_int(left), as_int(right)
    if a is not None and b is not None and a.bit_length() + b.bit_length() > MAX_POWER_BITS:
        raise too_big("that number")


def check_power(base: Any, exp: Any) -> None:
    a, b = as_int(base), as_int(exp)
    if a is not None and b is not None and abs(a) > 1 and b * a.bit_length() > MAX_POWER_BITS:
        raise too_big("that power")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def check_percent_format(fmt: Any) -> None:
    if not isinstance(fmt, str):
        return
    for width, precision in _PERCENT.findall(fmt):
        for n in (width, precision):
            if n == "*" or (n and int(n) > MAX_CHARS):
                raise too_big(f"the format {fmt[:40]!r}")


def check_brace_format(fmt: str) -> None:
    plain = fmt.replace("{{", "").replace("}}", "")
    if re.search(r"\{[^{}]*\{", plain):
        raise TemplateLimit("nested {…{…}} format fields are not allowed in templates")
    for field_ in re.findall(r"\{([^{}]*)\}", plain):
        spec = field_.partition(":")[2]
        if any(int(n) > MAX_CHARS for n in re.findall(r"\d+", spec)):
            raise too_big(f"the format {fmt[:40]!r}")


def check_method(obj: Any, args: tuple, kwargs: dict) -> None:
    """Bounds for the str methods whose arguments say how big their result is."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(obj, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = as_int(args[0] if args else kwargs.get("width"))
        if width is not None and width > MAX_CHARS:
            raise too_big(f"{name}({width})")
    elif name == "expandtabs":
        tab = as_int(args[0] if args else kwargs.get("tabsize", 8)) or 0
        if tab * owner.count("\t" if isinstance(owner, str) else b"\t") > MAX_CHARS:
            raise too_big("expandtabs")
    elif name == "replace" and len(args) >= 2:
        check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args and isinstance(args[0], list | tuple):
        if size_of(args[0]) + len(owner) * len(args[0]) > MAX_CHARS:
            raise too_big("join")
    elif name in ("translate", "maketrans"):
        raise TemplateLimit(f"str.{name} is not allowed in templates")


def check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(s, str) or not isinstance(old, str) or not isinstance(new, str):
        return
    hits = s.count(old) if old else len(s) + 1
    n = as_int(count)
    if n is not None and n >= 0:
        hits = min(hits, n)
    if len(s) + hits * (len(new) - len(old)) > MAX_CHARS:
        raise too_big("replace")


# Filters whose arguments say how big their result is: (value position after any
# context/environment argument) -> a check of the value and the other arguments.
def check_filter(name: str, args: tuple, kwargs: dict) -> None:
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        width = as_int(rest[0] if rest else kwargs.get("width", 80))
        if width is not None and width > MAX_CHARS:
            raise too_big(f"center({width})")
    elif name == "indent":
        width = rest[0] if rest else kwargs.get("width", 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        each = len(width) if isinstance(width, str) else (as_int(width) or 0)
        if each * lines > MAX_CHARS:
            raise too_big("indent")
    elif name == "format":
        check_percent_format(value)
    elif name in ("batch", "slice"):
        n = as_int(rest[0] if rest else kwargs.get("linecount", kwargs.get("slices")))
        if n is not None and n > MAX_ITEMS:
            raise TemplateLimit(f"{name}({n}): at most {MAX_ITEMS} in a template")
    elif name == "replace" and len(rest) >= 2:
        check_replace(value, rest[0], rest[1], rest[2] if len(rest) > 2 else -1)
    elif name == "join":
        sep = rest[0] if rest else kwargs.get("d", "")
        if isinstance(value, list | tuple) and isinstance(sep, str):
            if size_of(value) + len(sep) * len(value) > MAX_CHARS:
                raise too_big("join")
    elif name == "wordwrap":
        width = as_int(rest[0] if rest else kwargs.get("width", 79)) or 1
        wrap = rest[2] if len(rest) > 2 else kwargs.get("wrapstring") or "\n"
        if isinstance(value, str) and isinstance(wrap, str):
            if len(value) + (len(value) // max(width, 1) + 1) * len(wrap) > MAX_CHARS:
                raise too_big("wordwrap")


def checked_result(value: Any, what: str) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict | set) and size_of(value) > MAX_CHARS:
        raise too_big(f"the result of {what}")
    return value
