"""What templates see: the lead and the account as records read field by field, the lead's
custom attributes (a missing one is named, and falsy), and the context of one rendering."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, UndefinedError
from jinja2.utils import missing

from .errors import MissingAttribute, TemplateLimit

if TYPE_CHECKING:
    from ..config import Message, Sequence


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
    """``lead.attributes``: a key this lead lacks (or holds as null) is a ``MissingAttribute``
    when used, and falsy when tested, so ``or``, ``if`` and ``default`` guard it. Nested
    mappings are seen the same way: a lead without ``address``, or whose ``address`` has no
    ``city``, lacks ``address.city``."""

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
        if value is None:  # a null is no value: lacked, so guarded or named, never "None" or ""
            raise KeyError(key)
        if isinstance(value, Mapping) and not isinstance(value, Attributes):
            return self._child(str(key), value)
        return value


class FieldUndefined(StrictUndefined):
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
            return FieldUndefined(obj=obj._child(mine), name=name)
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
