"""Templates: sandboxed Jinja2 with StrictUndefined, every template compiled once.

Templates see ``lead`` (every lead column; ``lead.attributes.x`` for custom fields),
``account``, ``sequence``, ``message`` and ``now``. ``None`` renders as an empty string so
``{{ lead.first_name or lead.username }}`` reads naturally.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

if TYPE_CHECKING:
    from .config import Account, Config, Message, Sequence


class TemplateProblem(Exception):
    """A template failed to compile or render; ``loc`` is its place in sequences.yaml."""

    def __init__(self, loc: tuple, what: str) -> None:
        super().__init__(what)
        self.loc = loc
        self.what = what


@dataclass(frozen=True)
class Rendered:
    text: str | None
    media_url: str | None
    type: str
    variant_id: str | None


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def make_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, finalize=_finalize, keep_trailing_newline=False
    )


class Renderer:
    """Compiles every template of a config once; renders per lead."""

    def __init__(self, config: Config) -> None:
        self.env = make_env()
        self.problems: list[TemplateProblem] = []
        self._compiled: dict[tuple[str, str, str | None], Any] = {}
        self._loc: dict[tuple[str, str, str | None], tuple] = {}
        # Templates that failed to compile, by key: the one problem that names why.
        self._failed: dict[tuple[str, str, str | None], TemplateProblem] = {}
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
            self._compiled[key] = self.env.from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" (template line {line})" if line and line > 1 else ""
            problem = TemplateProblem(loc, f"template does not compile{where}: {exc}")
            # Variants without their own template share the message's: one problem per place.
            if not any(p.loc == loc for p in self.problems):
                self.problems.append(problem)
            self._failed[key] = problem
            self._compiled[key] = None

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
        context = {
            "lead": lead,
            "account": account.model_dump() if account else {},
            "sequence": {"id": sequence.id, "name": sequence.name or sequence.id},
            "message": {"id": message.id, "type": message.type, "variant": variant_id},
            "now": now or datetime.now(UTC),
        }
        try:
            text = template.render(context).strip()
        except UndefinedError as exc:
            raise TemplateProblem(
                loc,
                f"{exc.message}: the template uses a variable the lead does not have; guard it "
                "with `{{ x or '' }}`/`{% if x is defined %}` or fix the name",
            ) from None
        except Exception as exc:  # noqa: BLE001 - any template runtime error is a template problem
            raise TemplateProblem(loc, f"template failed: {type(exc).__name__}: {exc}") from None
        return Rendered(text, media, message.type, variant_id)


def sample_lead(config: Config, sequence: Sequence | None = None) -> dict[str, Any]:
    """A realistic lead for test-rendering: every column, plus attributes the triggers name."""
    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    attrs: dict[str, Any] = {}
    seqs = [sequence] if sequence else list(config.sequences)
    for seq in seqs:
        _attributes_from(seq.trigger, attrs)
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
