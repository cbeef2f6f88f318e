"""What a template's failure is: a ``TemplateProblem`` (its place in sequences.yaml and the
skip reason a run records), raised from a ``TemplateLimit`` (a sandbox bound) or a
``MissingAttribute`` (a custom attribute this lead lacks)."""

from __future__ import annotations

from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError


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
