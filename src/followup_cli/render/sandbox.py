"""The bounded Jinja2 sandbox: every loop step, call, filter and operator counted against a
budget of ``MAX_STEPS``, every result checked by ``limits``, every printed value passed
through ``_finalize``; ``render_bounded`` renders one template with a fresh budget."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import wraps
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.runtime import Undefined, new_context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

from .errors import TemplateLimit
from .fields import Attributes, FieldUndefined, Record
from .limits import (
    MAX_CHARS,
    MAX_ITEMS,
    MAX_STEPS,
    check_brace_format,
    check_filter,
    check_method,
    check_percent_format,
    check_power,
    check_repeat,
    check_size,
    checked_result,
    size_of,
    too_big,
)

_budget = threading.local()


def _step(n: int = 1) -> None:
    left = getattr(_budget, "left", None)
    if left is None:  # compile-time constant folding: nothing to count
        return
    _budget.left = left - n
    if left - n < 0:
        raise TemplateLimit(
            f"takes more than {MAX_STEPS} loop steps and calls to render; simplify it"
        )


def _range(*args: Any) -> range:
    r = range(*args)
    if len(r) > MAX_ITEMS:
        raise TemplateLimit(f"range() gives at most {MAX_ITEMS} numbers in a template")
    return r


@pass_context
def _loop_step(context: Any, iterable: Any) -> Any:
    """Wraps every ``{% for %}``'s iterable: each step counts against the budget."""
    for item in iterable:
        _step()
        yield item


@pass_context
def _piece(context: Any, value: Any) -> Any:
    """Wraps every operand of ``~``: a record is never printed, no piece is too big."""
    return _finalize(value)


def _guard_filter(name: str, func: Any) -> Any:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        for a in args[skip:]:
            check_size(a, f"the input of |{name}")
        for a in kwargs.values():
            check_size(a, f"an argument of |{name}")
        check_filter(name, args[skip:], kwargs)
        return checked_result(func(*args, **kwargs), f"|{name}")

    return guarded


def _finalize(value: Any) -> Any:
    """Every ``{{ … }}`` passes here before it is printed."""
    if value is None:
        return ""
    if isinstance(value, Undefined):
        return value  # StrictUndefined names itself when printed
    if isinstance(value, Record):
        value._whole()
    if isinstance(value, Mapping):
        raise TemplateLimit(
            "a whole mapping (e.g. {{ lead.attributes }}) is never printed; print one of its "
            "keys, e.g. {{ lead.attributes.interest }}"
        )
    if size_of(value) > MAX_CHARS:
        raise too_big("printing it")
    return value


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with bounds on what a template can build."""

    intercepted_binops = frozenset({"*", "+", "**", "%", "//"})

    def __init__(self) -> None:
        super().__init__(
            undefined=FieldUndefined,
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=False,
        )
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_loop_step"] = _loop_step
        self.filters["_piece"] = _piece

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "*":
            check_repeat(left, right)
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(
                right, str | bytes | list | tuple
            ):
                if size_of(left) + size_of(right) > MAX_CHARS:
                    raise too_big("joining them")
        elif operator == "**":
            check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            check_size(right, "the values of %")
            check_percent_format(left)
        return checked_result(super().call_binop(context, operator, left, right), operator)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A custom field named like a dict method (`items`, `values`, `count`, `get`...) is
        # the lead's value, not the method: Jinja tries the attribute first.
        if isinstance(obj, Attributes) and dict.__contains__(obj, attribute):
            try:
                return obj[attribute]
            except KeyError:  # held as null: lacked, as any missing attribute
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _step()
        for a in (*args, *kwargs.values()):
            check_size(a, "an argument")
        check_method(obj, args, kwargs)
        return checked_result(super().call(context, obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            check_brace_format(value.__self__)
        return wrapped

    def compile_bounded(self, source: str) -> Any:
        """Parse, wrap every loop and ``~`` in the bounds, compile."""
        tree = self.parse(source)
        for loop in list(tree.find_all(nodes.For)):
            if loop.recursive:
                raise TemplateSyntaxError(
                    "recursive loops are not allowed in templates", loop.lineno
                )
            loop.iter = nodes.Filter(
                loop.iter, "_loop_step", [], [], None, None, lineno=loop.lineno
            )
        for concat in list(tree.find_all(nodes.Concat)):
            concat.nodes = [
                nodes.Filter(n, "_piece", [], [], None, None, lineno=n.lineno) for n in concat.nodes
            ]
        return self.from_string(tree)


def make_env() -> BoundedSandbox:
    return BoundedSandbox()


def render_bounded(template: Any, context: dict[str, Any]) -> str:
    """Render with a fresh step budget, stopping as soon as the output is too long.

    What ``template.render(context)`` does, for the one rendering a message costs: the
    template's globals are copied into a plain dict once per template (instead of being
    merged from Jinja's ChainMap, and its keys listed, at every render), and its chunks are
    read straight from the compiled render function; an exception raised in it goes
    through Jinja's ``handle_exception`` as ``Template.generate`` sends it."""
    base = template.__dict__.get("_bounded_globals")
    if base is None:
        base = template._bounded_globals = dict(template.globals)
    _budget.left = MAX_STEPS
    try:
        ctx = new_context(
            template.environment,
            template.name,
            template.blocks,
            {**base, **context},
            shared=True,
            globals=base,
        )
        parts: list[str] = []
        size = 0
        try:
            for chunk in template.root_render_func(ctx):
                size += len(chunk)
                if size > MAX_CHARS:
                    break
                parts.append(chunk)
        except Exception:  # noqa: BLE001 - as Template.generate: Jinja re-raises it, traced
            template.environment.handle_exception()
        if size > MAX_CHARS:
            raise too_big("the message")
        return "".join(parts)
    finally:
        _budget.left = None
