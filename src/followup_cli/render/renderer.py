"""The ``Renderer``: every template of a config compiled once (a template that does not
compile is one problem, named by its place), rendered per lead; a rendering's failure, or a
text over the channel's limit, raised as a ``TemplateProblem``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, UndefinedError

from .errors import MissingAttribute, TemplateLimit, TemplateProblem
from .fields import template_context
from .sandbox import make_env, render_bounded

if TYPE_CHECKING:
    from ..config import Account, Config, Message, Sequence


@dataclass(frozen=True)
class Rendered:
    text: str | None
    media_url: str | None
    type: str
    variant_id: str | None


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
        variants = message.variants
        variant = next((v for v in variants if v.id == variant_id), None) if variants else None
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
        except Exception as exc:  # noqa: BLE001 - any template runtime error is a template problem
            raise _problem(loc, exc) from None
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


def _problem(loc: tuple, exc: Exception) -> TemplateProblem:
    """What a rendering's exception means for the operator, and the reason a run records."""
    if isinstance(exc, MissingAttribute):
        return TemplateProblem(
            loc,
            f"lead.attributes.{exc.name} is missing for this lead: such leads are skipped "
            f"(missing_attribute:{exc.name}); guard it with "
            f"{{{{ lead.attributes.{exc.name} | default('…') }}}} to serve them too",
            f"missing_attribute:{exc.name}",
        )
    if isinstance(exc, UndefinedError):
        return TemplateProblem(
            loc,
            f"{exc.message}: the template uses a variable the lead does not have; fix the "
            "name, or guard it with `| default('…')` or `{% if x is defined %}`",
        )
    if isinstance(exc, TemplateLimit):
        return TemplateProblem(loc, f"template refused: {exc.message}", exc.reason)
    if isinstance(exc, RecursionError):
        return TemplateProblem(loc, "template failed: it calls itself too deeply")
    return TemplateProblem(loc, f"template failed: {type(exc).__name__}: {exc}")
