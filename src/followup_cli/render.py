"""Templates: a bounded Jinja2 sandbox with StrictUndefined, every template compiled once.

Templates see ``lead`` (every lead column; ``lead.attributes.x`` for custom fields),
``account``, ``sequence``, ``message`` and ``now``. ``None`` renders as an empty string so
``{{ lead.first_name or lead.username }}`` reads naturally.

A typo in a column (``lead.frist_name``) is an error. A custom attribute is data: a lead
that lacks one is skipped with ``missing_attribute:<key>`` while the others are served
(nested: ``missing_attribute:address.city`` when it lacks ``address`` or its ``city``), and
a missing attribute is falsy, so ``{{ lead.attributes.product | default('our product') }}``,
``{{ lead.attributes.product or 'our product' }}`` and ``{% if lead.attributes.product %}``
guard it.

Nothing a template does can flood a person or the machine: every string, list or printed
value it builds is at most ``MAX_CHARS`` characters (``'a' * 10**9`` is refused before it is
built), ``range`` gives at most ``MAX_ITEMS`` numbers, a rendering takes at most ``MAX_STEPS``
loop steps and calls, and ``{{ lead }}`` or ``{{ account }}`` never print a whole record.
The channel's own limit (Instagram: 1000 UTF-8 bytes) is checked on the result
(``too_long``).
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial, wraps
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing, pass_context

if TYPE_CHECKING:
    from .config import Account, Config, Message, Sequence

MAX_CHARS = 10_000  # any string, list or printed value a template builds, and its output
MAX_ITEMS = 1_000  # range(), batch(), slice()
MAX_STEPS = 50_000  # loop steps, calls, filters and operators in one rendering
MAX_POWER_BITS = 4_000  # 2 ** 4000 is fine, 10 ** 10 ** 8 is not


class TemplateProblem(Exception):
    """A template failed to compile or render; ``loc`` is its place in sequences.yaml and
    ``reason`` the skip reason a run records (``template_error``, ``too_long``,
    ``missing_attribute:<key>``)."""

    def __init__(
        self, loc: tuple, what: str, reason: str = "template_error", size: int | None = None
    ) -> None:
        super().__init__(what)
        self.loc = loc
        self.what = what
        self.reason = reason
        self.size = size  # UTF-8 bytes of a rendering over the channel's limit


class TemplateLimit(SecurityError):
    """A template went past one of the sandbox's bounds."""

    def __init__(self, message: str, reason: str = "template_error") -> None:
        super().__init__(message)
        self.reason = reason


class MissingAttribute(UndefinedError):
    """The lead has no such custom attribute (``lead.attributes.<name>``)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"no attribute {name!r}")
        self.name = name


@dataclass(frozen=True)
class Rendered:
    text: str | None
    media_url: str | None
    type: str
    variant_id: str | None


# ------------------------------------------------------------------- what templates see


class Record:
    """A lead or an account as a template sees it: fields by name (``lead.first_name``,
    ``lead['first_name']``, ``lead.get('x', 'y')``), never the whole record at once."""

    __slots__ = ("_fields", "_name")

    def __init__(self, name: str, fields: Mapping[str, Any]) -> None:
        self._fields = fields
        self._name = name

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def get(self, key: str, default: Any = None) -> Any:
        return self._fields.get(key, default)

    def _whole(self, *_: Any) -> Any:
        example = "first_name" if self._name == "lead" else "id"
        raise TemplateLimit(
            f"`{self._name}` is a whole record and is never printed or listed; use one of "
            f"its fields, e.g. {{{{ {self._name}.{example} }}}}"
        )

    __str__ = __iter__ = __format__ = __len__ = _whole

    def __repr__(self) -> str:
        return f"<{self._name}>"


class Attributes(dict):
    """``lead.attributes``: a key this lead lacks is a ``MissingAttribute`` when used, and
    falsy when tested, so ``or``, ``if`` and ``default`` guard it. Nested mappings are seen
    the same way: a lead without ``address``, or whose ``address`` has no ``city``, lacks
    ``address.city``."""

    __slots__ = ("__path",)

    def __init__(self, fields: Mapping[str, Any] = (), path: str = "") -> None:  # type: ignore[assignment]
        super().__init__(fields)
        self.__path = path

    def _path_of(self, name: str) -> str:
        """The dotted name of a key of this mapping (``address.city``)."""
        return f"{self.__path}{name}"

    def _child(self, name: str, fields: Mapping[str, Any] = ()) -> Attributes:  # type: ignore[assignment]
        return Attributes(fields, f"{self.__path}{name}.")

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, Mapping) and not isinstance(value, Attributes):
            return self._child(str(key), value)
        return value


class _Undefined(StrictUndefined):
    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: Any = UndefinedError,
    ) -> None:
        if isinstance(obj, Attributes) and isinstance(name, str) and exc is UndefinedError:
            exc = partial(MissingAttribute, obj._path_of(name))
        super().__init__(hint, obj, name, exc)

    def _deeper(self, name: Any) -> Any:
        """``lead.attributes.address.city`` where ``address`` is missing: ``address.city`` is
        missing too (named so), not a template error."""
        obj, mine = self._undefined_obj, self._undefined_name
        if isinstance(obj, Attributes) and isinstance(mine, str) and isinstance(name, str):
            return _Undefined(obj=obj._child(mine), name=name)
        return self._fail_with_undefined_error()

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return self._deeper(name)

    def __getitem__(self, name: Any) -> Any:
        return self._deeper(name)

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        if isinstance(obj, Record) and self._undefined_hint is None:
            near = difflib.get_close_matches(str(name), list(obj._fields), n=1)
            hint = f" (did you mean {obj._name}.{near[0]}?)" if near else ""
            return f"{obj._name} has no field {name!r}{hint}"
        return super()._undefined_message

    def __bool__(self) -> bool:
        if isinstance(self._undefined_obj, Attributes):
            return False  # `lead.attributes.x or 'y'`, `{% if lead.attributes.x %}`
        return self._fail_with_undefined_error()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- bounds

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


def _size(obj: Any, limit: int = MAX_CHARS) -> int:
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


def _too_big(what: str, limit: int = MAX_CHARS) -> TemplateLimit:
    return TemplateLimit(
        f"{what} would be over {limit} characters; a template may not build more", "too_long"
    )


def _check(value: Any, what: str = "a value") -> Any:
    if _size(value) > MAX_CHARS:
        raise _too_big(what)
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        n = _int(times)
        if n is not None and isinstance(seq, str | bytes | list | tuple):
            if n > 0 and _size(seq) * n > MAX_CHARS:
                raise _too_big("repeating it")
    a, b = _int(left), _int(right)
    if a is not None and b is not None and a.bit_length() + b.bit_length() > MAX_POWER_BITS:
        raise _too_big("that number")


def _check_power(base: Any, exp: Any) -> None:
    a, b = _int(base), _int(exp)
    if a is not None and b is not None and abs(a) > 1 and b * a.bit_length() > MAX_POWER_BITS:
        raise _too_big("that power")


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_percent_format(fmt: Any) -> None:
    if not isinstance(fmt, str):
        return
    for width, precision in _PERCENT.findall(fmt):
        for n in (width, precision):
            if n == "*" or (n and int(n) > MAX_CHARS):
                raise _too_big(f"the format {fmt[:40]!r}")


def _check_brace_format(fmt: str) -> None:
    plain = fmt.replace("{{", "").replace("}}", "")
    if re.search(r"\{[^{}]*\{", plain):
        raise TemplateLimit("nested {…{…}} format fields are not allowed in templates")
    for field_ in re.findall(r"\{([^{}]*)\}", plain):
        spec = field_.partition(":")[2]
        if any(int(n) > MAX_CHARS for n in re.findall(r"\d+", spec)):
            raise _too_big(f"the format {fmt[:40]!r}")


def _check_method(obj: Any, args: tuple, kwargs: dict) -> None:
    """Bounds for the str methods whose arguments say how big their result is."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(obj, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int(args[0] if args else kwargs.get("width"))
        if width is not None and width > MAX_CHARS:
            raise _too_big(f"{name}({width})")
    elif name == "expandtabs":
        tab = _int(args[0] if args else kwargs.get("tabsize", 8)) or 0
        if tab * owner.count("\t" if isinstance(owner, str) else b"\t") > MAX_CHARS:
            raise _too_big("expandtabs")
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args and isinstance(args[0], list | tuple):
        if _size(args[0]) + len(owner) * len(args[0]) > MAX_CHARS:
            raise _too_big("join")
    elif name in ("translate", "maketrans"):
        raise TemplateLimit(f"str.{name} is not allowed in templates")


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not isinstance(s, str) or not isinstance(old, str) or not isinstance(new, str):
        return
    hits = s.count(old) if old else len(s) + 1
    n = _int(count)
    if n is not None and n >= 0:
        hits = min(hits, n)
    if len(s) + hits * (len(new) - len(old)) > MAX_CHARS:
        raise _too_big("replace")


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


# Filters whose arguments say how big their result is: (value position after any
# context/environment argument) -> a check of the value and the other arguments.
def _filter_checks(name: str, args: tuple, kwargs: dict) -> None:
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        width = _int(rest[0] if rest else kwargs.get("width", 80))
        if width is not None and width > MAX_CHARS:
            raise _too_big(f"center({width})")
    elif name == "indent":
        width = rest[0] if rest else kwargs.get("width", 4)
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        each = len(width) if isinstance(width, str) else (_int(width) or 0)
        if each * lines > MAX_CHARS:
            raise _too_big("indent")
    elif name == "format":
        _check_percent_format(value)
    elif name in ("batch", "slice"):
        n = _int(rest[0] if rest else kwargs.get("linecount", kwargs.get("slices")))
        if n is not None and n > MAX_ITEMS:
            raise TemplateLimit(f"{name}({n}): at most {MAX_ITEMS} in a template")
    elif name == "replace" and len(rest) >= 2:
        _check_replace(value, rest[0], rest[1], rest[2] if len(rest) > 2 else -1)
    elif name == "join":
        sep = rest[0] if rest else kwargs.get("d", "")
        if isinstance(value, list | tuple) and isinstance(sep, str):
            if _size(value) + len(sep) * len(value) > MAX_CHARS:
                raise _too_big("join")
    elif name == "wordwrap":
        width = _int(rest[0] if rest else kwargs.get("width", 79)) or 1
        wrap = rest[2] if len(rest) > 2 else kwargs.get("wrapstring") or "\n"
        if isinstance(value, str) and isinstance(wrap, str):
            if len(value) + (len(value) // max(width, 1) + 1) * len(wrap) > MAX_CHARS:
                raise _too_big("wordwrap")


def _guard_filter(name: str, func: Any) -> Any:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        for a in args[skip:]:
            _check(a, f"the input of |{name}")
        for a in kwargs.values():
            _check(a, f"an argument of |{name}")
        _filter_checks(name, args[skip:], kwargs)
        return _checked_result(func(*args, **kwargs), f"|{name}")

    return guarded


def _checked_result(value: Any, what: str) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict | set) and _size(value) > MAX_CHARS:
        raise _too_big(f"the result of {what}")
    return value


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
    if _size(value) > MAX_CHARS:
        raise _too_big("printing it")
    return value


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with bounds on what a template can build."""

    intercepted_binops = frozenset({"*", "+", "**", "%", "//"})

    def __init__(self) -> None:
        super().__init__(
            undefined=_Undefined,
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
            _check_repeat(left, right)
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and isinstance(
                right, str | bytes | list | tuple
            ):
                if _size(left) + _size(right) > MAX_CHARS:
                    raise _too_big("joining them")
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check(right, "the values of %")
            _check_percent_format(left)
        return _checked_result(super().call_binop(context, operator, left, right), operator)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _step()
        for a in (*args, *kwargs.values()):
            _check(a, "an argument")
        _check_method(obj, args, kwargs)
        return _checked_result(super().call(context, obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_brace_format(value.__self__)
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


def _generate(template: Any, context: dict[str, Any]) -> Iterator[str]:
    """``template.generate(context)``, with the template's globals copied into a plain
    dict once per template instead of from Jinja's ChainMap at every render."""
    base = template.__dict__.get("_bounded_globals")
    if base is None:
        base = template._bounded_globals = dict(template.globals)
    ctx = template.new_context({**base, **context}, shared=True)
    try:
        yield from template.root_render_func(ctx)
    except Exception:  # noqa: BLE001 - as Template.generate: Jinja re-raises it, traced
        yield template.environment.handle_exception()


def render_bounded(template: Any, context: dict[str, Any]) -> str:
    """Render with a fresh step budget, stopping as soon as the output is too long."""
    _budget.left = MAX_STEPS
    try:
        parts: list[str] = []
        size = 0
        for chunk in _generate(template, context):
            size += len(chunk)
            if size > MAX_CHARS:
                raise _too_big("the message")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _budget.left = None


def with_attribute(attrs: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``attrs`` where the attribute ``name`` (dotted when nested: the name in
    ``missing_attribute:<name>``) is ``value``; the mappings on its way are copied, or made
    where missing."""
    out = dict(attrs)
    head, dot, rest = name.partition(".")
    if not dot or head not in out and name in out:
        out[name] = value
        return out
    inner = out.get(head)
    out[head] = with_attribute(inner if isinstance(inner, Mapping) else {}, rest, value)
    return out


def attribute_names(attrs: Mapping[str, Any], depth: int = 4, prefix: str = "") -> set[str]:
    """The attributes a lead has, nested ones dotted (``address``, ``address.city``)."""
    out: set[str] = set()
    for key, value in attrs.items():
        out.add(f"{prefix}{key}")
        if depth > 1 and isinstance(value, Mapping):
            out |= attribute_names(value, depth - 1, f"{prefix}{key}.")
    return out


def template_context(
    lead: Mapping[str, Any],
    account: Mapping[str, Any],
    sequence: Sequence,
    message: Message,
    variant_id: str | None,
    now: datetime | None,
) -> dict[str, Any]:
    fields = dict(lead)
    attrs = fields.get("attributes")
    fields["attributes"] = Attributes(attrs if isinstance(attrs, Mapping) else {})
    return {
        "lead": Record("lead", fields),
        "account": Record("account", account),
        "sequence": {"id": sequence.id, "name": sequence.name or sequence.id},
        "message": {"id": message.id, "type": message.type, "variant": variant_id},
        "now": now or datetime.now(UTC),
    }


class Renderer:
    """Compiles every template of a config once; renders per lead."""

    def __init__(self, config: Config) -> None:
        self.env = make_env()
        # The channel's own limit on a text, in UTF-8 bytes (Instagram: 1000).
        self.max_text_bytes: int | None = config.channel.max_text_bytes
        self.channel_type = config.channel.type
        self.problems: list[TemplateProblem] = []
        self._compiled: dict[tuple[str, str, str | None], Any] = {}
        self._loc: dict[tuple[str, str, str | None], tuple] = {}
        # Templates that failed to compile, by key: the one problem that names why.
        self._failed: dict[tuple[str, str, str | None], TemplateProblem] = {}
        # An account's fields as templates see them, dumped once (accounts are frozen).
        self._accounts: dict[int, tuple[Account, Mapping[str, Any]]] = {}
        for si, seq in enumerate(config.sequences):
            for mi, msg in enumerate(seq.messages):
                base = ("sequences", si, "messages", mi)
                if msg.variants:
                    for vi, v in enumerate(msg.variants):
                        src = v.template if v.template is not None else msg.template
                        loc = (
                            (*base, "variants", vi, "template")
                            if v.template
                            else (*base, "template")
                        )
                        self._compile((seq.id, msg.id, v.id), src, loc)
                else:
                    self._compile((seq.id, msg.id, None), msg.template, (*base, "template"))

    def _compile(self, key: tuple[str, str, str | None], source: str | None, loc: tuple) -> None:
        self._loc[key] = loc
        if source is None:
            self._compiled[key] = None
            return
        try:
            self._compiled[key] = self.env.compile_bounded(source)
        except (TemplateError, RecursionError) as exc:
            line = getattr(exc, "lineno", None)
            where = f" (template line {line})" if line and line > 1 else ""
            why = str(exc) if isinstance(exc, TemplateError) else "nested too deeply"
            problem = TemplateProblem(loc, f"template does not compile{where}: {why}")
            # Variants without their own template share the message's: one problem per place.
            if not any(p.loc == loc for p in self.problems):
                self.problems.append(problem)
            self._failed[key] = problem
            self._compiled[key] = None

    def _account_fields(self, account: Account | None) -> Mapping[str, Any]:
        if account is None:
            return {}
        hit = self._accounts.get(id(account))
        if hit is None or hit[0] is not account:
            hit = (account, MappingProxyType(account.model_dump()))
            self._accounts[id(account)] = hit
        return hit[1]

    def location(self, sequence_id: str, message_id: str, variant_id: str | None) -> tuple:
        """The template's place in sequences.yaml (for Problem lines)."""
        return self._loc.get((sequence_id, message_id, variant_id), ())

    def compile_problem(
        self, sequence_id: str, message_id: str, variant_id: str | None
    ) -> TemplateProblem | None:
        """The compile problem of this template, or None when it compiled (or has none)."""
        return self._failed.get((sequence_id, message_id, variant_id))

    def render(
        self,
        sequence: Sequence,
        message: Message,
        variant_id: str | None,
        lead: dict[str, Any],
        account: Account | None = None,
        now: datetime | None = None,
    ) -> Rendered:
        key = (sequence.id, message.id, variant_id)
        if key not in self._compiled:
            raise TemplateProblem((), f"no template for {sequence.id}/{message.id}/{variant_id}")
        loc = self._loc[key]
        template = self._compiled[key]
        variant = next((v for v in message.variants or () if v.id == variant_id), None)
        media = (variant.media_url if variant else None) or message.media_url
        if template is None:
            failed = self._failed.get(key)
            if failed is not None:
                # The same problem (with Jinja's message) that compiling reported, not a vaguer
                # second one: callers that collect both see one problem per template.
                raise TemplateProblem(failed.loc, failed.what)
            return Rendered(None, media, message.type, variant_id)
        fields = self._account_fields(account)
        context = template_context(lead, fields, sequence, message, variant_id, now)
        try:
            text = render_bounded(template, context).strip()
        except MissingAttribute as exc:
            raise TemplateProblem(
                loc,
                f"lead.attributes.{exc.name} is missing for this lead: such leads are skipped "
                f"(missing_attribute:{exc.name}); guard it with "
                f"{{{{ lead.attributes.{exc.name} | default('…') }}}} to serve them too",
                f"missing_attribute:{exc.name}",
            ) from None
        except UndefinedError as exc:
            raise TemplateProblem(
                loc,
                f"{exc.message}: the template uses a variable the lead does not have; fix the "
                "name, or guard it with `| default('…')` or `{% if x is defined %}`",
            ) from None
        except TemplateLimit as exc:
            raise TemplateProblem(loc, f"template refused: {exc.message}", exc.reason) from None
        except RecursionError:
            raise TemplateProblem(loc, "template failed: it calls itself too deeply") from None
        except Exception as exc:  # noqa: BLE001 - any template runtime error is a template problem
            raise TemplateProblem(loc, f"template failed: {type(exc).__name__}: {exc}") from None
        limit = self.max_text_bytes
        size = len(text.encode("utf-8"))
        if limit is not None and size > limit:
            raise TemplateProblem(
                loc,
                f"renders {size} UTF-8 bytes; the {self.channel_type} channel takes at most "
                f"{limit}: shorten it",
                "too_long",
                size,
            )
        return Rendered(text, media, message.type, variant_id)


def sample_lead(config: Config, sequence: Sequence | None = None) -> dict[str, Any]:
    """A realistic lead for test-rendering: every column, plus attributes the triggers name."""
    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    attrs: dict[str, Any] = {}
    seqs = [sequence] if sequence else list(config.sequences)
    for seq in seqs:
        _attributes_from(seq.trigger, attrs)
    for name in config.attributes:
        attrs.setdefault(name, "sample")
    lead: dict[str, Any] = {
        "id": "lead_sample",
        "account_id": config.accounts[0].id if config.accounts else "acct",
        "user_id": "u_sample",
        "conversation_id": "conv_sample",
        "recipient_id": "1234567890",
        "username": "sample.user",
        "first_name": "Sam",
        "score": 4,
        "status": "qualified",
        "last_inbound_at": now,
        "last_inbound_text": "How much is it?",
        "last_outbound_at": now,
        "converted_at": None,
        "timezone": config.settings.timezone,
        "attributes": attrs,
    }
    if config.sample_lead:
        extra = dict(config.sample_lead)
        if isinstance(extra.get("attributes"), dict):
            attrs.update(extra.pop("attributes"))
        lead.update(extra)
    return lead


def _attributes_from(conditions: Any, attrs: dict[str, Any]) -> None:
    for c in conditions or ():
        if c.any or c.all:
            _attributes_from(c.any or c.all, attrs)
            continue
        if c.field and c.field.startswith("attributes."):
            key = c.field.split(".", 1)[1]
            value = c.value
            if isinstance(value, list | tuple):
                value = value[0] if value else "sample"
            if c.op == "exists" or value is None:
                value = "sample"
            attrs.setdefault(key, value)
