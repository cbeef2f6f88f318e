"""``sequences:``: the sequences, their trigger conditions, their steps and the steps'
A/B variants."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..models import parse_time
from .bounds import COUNT_MAX, HOURS_MAX, LEAD_COLUMNS, OPERATORS, SCORE_BOUND, WEIGHT_MAX, _Model

TIME_COLUMNS = ("last_inbound_at", "last_outbound_at", "converted_at")


class Condition(_Model):
    """Either one test (``field``, ``op``, ``value``) or ``any:`` / ``all:`` of conditions."""

    field: str | None = Field(
        None, description="A lead column or attributes.<key>.", examples=["score"]
    )
    op: str | None = Field(None, description="One of the operators below.", examples=["between"])
    value: Any = Field(
        None,
        description="What to compare with: a list for in, not_in and between.",
        examples=[[4, 6]],
    )
    any: tuple[Condition, ...] | None = Field(
        None,
        description="Alternatives: at least one of these conditions holds.",
        examples=[[{"field": "status", "op": "eq", "value": "new"}]],
    )
    all: tuple[Condition, ...] | None = Field(
        None,
        description="Every one of these conditions holds (to nest inside any).",
        examples=[[{"field": "score", "op": "gte", "value": 4}]],
    )

    @field_validator("value", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        """An unquoted YAML date or time (``value: 2026-03-01``) is its ISO 8601 text: what
        a time column compares with (and an attribute holding ISO dates, as text)."""
        if isinstance(value, list | tuple):
            return [cls._dates_as_text(v) for v in value]
        return value.isoformat() if isinstance(value, date | datetime) else value

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        groups = (self.any is not None) + (self.all is not None)
        if groups:
            if groups > 1 or self.field is not None or self.op is not None:
                raise ValueError(
                    "a condition is either {field, op, value} or one `any:`/`all:` list"
                )
            return self
        if self.field is None or self.op is None:
            raise ValueError("a condition needs `field:` and `op:` (or an `any:` list)")
        if self.op not in OPERATORS:
            raise ValueError(f"@op unknown op {self.op!r}; use one of {', '.join(OPERATORS)}")
        base = self.field.split(".", 1)[0]
        if base not in LEAD_COLUMNS or (base == "attributes" and "." not in self.field):
            raise ValueError(
                f"@field unknown field {self.field!r}; use a lead column "
                f"({', '.join(c for c in LEAD_COLUMNS if c != 'attributes')}) "
                "or attributes.<key>"
            )
        if self.op == "between":
            if not isinstance(self.value, list | tuple) or len(self.value) != 2:
                raise ValueError("@value `between` takes a list of two values: value: [low, high]")
            low, high = (_comparable(self.field, self.op, v) for v in self.value)
            if type(low) is not type(high):
                raise ValueError(
                    f"@value `between` compares like with like: {self.value[0]!r} and "
                    f"{self.value[1]!r} are not both numbers or both texts"
                )
            if low > high:
                raise ValueError(
                    f"@value `between` [{self.value[0]!r}, {self.value[1]!r}]: the low value "
                    "comes first, so nothing could match; swap them"
                )
        elif self.op in ("gt", "gte", "lt", "lte"):
            _comparable(self.field, self.op, self.value)
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list | tuple):
                raise ValueError(f"@value `{self.op}` takes a list: value: [a, b]")
        elif self.op == "exists":
            if self.value is not None and not isinstance(self.value, bool):
                raise ValueError("@value `exists` takes true or false (or no value, meaning true)")
        elif self.value is None and self.op not in ("eq", "ne"):
            raise ValueError(f"@op `{self.op}` needs a value")
        return self


def _comparable(field: str, op: str, value: Any) -> float | str:
    """A value an ordering operator can compare: a number (a number-like text counts as one,
    as in the rules) or a text; on ``score`` a number. Raises ValueError naming the fix."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"@value `{op}` compares with a number or a text, not {value!r}")
    if field in TIME_COLUMNS:
        when = _iso_time(value)
        if when is None:
            raise ValueError(
                f"@value {field} is a time: `{op}` compares it with an ISO 8601 time such as "
                f"2026-03-01 or 2026-03-01T09:00:00+01:00, not {value!r}"
            )
        return when
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            if field == "score":
                raise ValueError(
                    f"@value score is a number: `{op}` cannot compare it with {value!r}"
                ) from None
            return value
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"@value `{op}` needs a finite number, not {value!r}")
    return float(value)


def _iso_time(value: Any) -> str | None:
    """ISO 8601 text as a UTC time's text (which sorts as the times do); None otherwise."""
    try:
        when = parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when.isoformat() if when is not None else None


class Variant(_Model):
    id: str = Field(description="Variant id, reported in A/B results.", examples=["a"])
    weight: float = Field(
        1, ge=0, le=WEIGHT_MAX, description="Relative share of leads.", examples=[1]
    )
    template: str | None = Field(
        None,
        description="This variant's text (else the message's template).",
        examples=["Here is our catalogue, {{ lead.first_name }}."],
    )
    media_url: str | None = Field(
        None,
        description="This variant's media (else the message's media_url).",
        examples=["https://cdn.example.com/b.jpg"],
    )


class Message(_Model):
    id: str = Field(
        description="Step id, unique in the sequence; tracking rows and reports name it.",
        examples=["warm-1"],
    )
    delay_hours: float = Field(
        ge=0,
        le=HOURS_MAX,
        description=(
            "Hours after the trigger (the start of the lead's silence) when the step is due."
        ),
        examples=[4],
    )
    type: Literal["text", "image", "video"] = Field(
        "text", description="text, or an image or video with media_url.", examples=["text"]
    )
    template: str | None = Field(
        None,
        description="Jinja2 text; sees lead, account, sequence, message and now.",
        examples=["Hi {{ lead.first_name or lead.username }}!"],
    )
    media_url: str | None = Field(
        None,
        description="http(s) URL of the image or video.",
        examples=["https://cdn.example.com/catalog.jpg"],
    )
    active: bool = Field(
        True, description="false: the step is skipped (later steps still follow).", examples=[True]
    )
    variants: tuple[Variant, ...] | None = Field(
        None,
        description="A/B variants of this step.",
        examples=[[{"id": "a", "weight": 1, "template": "Hi!"}]],
    )

    @model_validator(mode="after")
    def _content(self) -> Message:
        if self.variants is not None and not self.variants:
            raise ValueError(
                "@variants `variants:` is empty; remove it or add at least one variant"
            )
        if self.variants and not any(v.weight > 0 for v in self.variants):
            raise ValueError("@variants every variant has weight 0: give one a positive weight")
        parts = self.variants or (
            Variant(id="-", template=self.template, media_url=self.media_url),
        )
        for v in parts:
            template = v.template if v.template is not None else self.template
            media = v.media_url or self.media_url
            if self.type == "text" and not (template or "").strip():
                where = "variants" if self.variants and v.template is not None else "template"
                raise ValueError(
                    f"@{where} a text message needs a non-blank `template:` (on the message "
                    "or each variant); a blank one would be skipped at every run"
                )
            if self.type in ("image", "video"):
                if not media:
                    raise ValueError(f"@type an {self.type} message needs `media_url:`")
                if not re.match(r"^https?://[^/\s]+", media):
                    raise ValueError(
                        f"@media_url media_url {media!r} must be an absolute http(s) URL"
                    )
        return self


class Sequence(_Model):
    id: str = Field(
        description="Sequence id, unique; tracking rows and reports name it.", examples=["warm"]
    )
    name: str | None = Field(None, description="A name for people.", examples=["Warm leads"])
    priority: int = Field(
        0,
        ge=-SCORE_BOUND,
        le=SCORE_BOUND,
        description="Higher wins when several sequences match a lead.",
        examples=[10],
    )
    active: bool = Field(
        True, description="false: no lead enters it; enrolled leads wait in it.", examples=[True]
    )
    max_followups: int | None = Field(
        None,
        ge=1,
        le=COUNT_MAX,
        description="Follow-ups a lead gets from this sequence (default: its number of steps).",
        examples=[3],
    )
    holdout: float = Field(
        0,
        ge=0,
        lt=1,
        description="Share of eligible leads kept as a control group: enrolled, never messaged.",
        examples=[0.1],
    )
    trigger: tuple[Condition, ...] = Field(
        (),
        description="Conditions a lead must meet to enter (and stay in) the sequence.",
        examples=[[{"field": "score", "op": "between", "value": [4, 6]}]],
    )
    messages: tuple[Message, ...] = Field(
        description="The steps, in order.",
        examples=[[{"id": "warm-1", "delay_hours": 4, "template": "Hi {{ lead.first_name }}"}]],
    )

    @field_validator("messages")
    @classmethod
    def _some(cls, v: tuple[Message, ...]) -> tuple[Message, ...]:
        if not v:
            raise ValueError("a sequence needs at least one message")
        return v

    @property
    def limit(self) -> int:
        return self.max_followups if self.max_followups is not None else len(self.messages)
