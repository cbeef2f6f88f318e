"""sequences.yaml -> a validated ``Config``.

The YAML is parsed with line numbers kept, validated by pydantic models that forbid
unknown keys, and every problem is reported as ``file:line: where: what``. Semantic
checks (unique ids, condition fields, templates rendered against a sample lead, timing
that cannot fit the channel's messaging window) live in ``configcheck.check_config``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from .errors import ConfigError
from .leadcolumns import COLUMN_NAMES

LEAD_COLUMNS = COLUMN_NAMES
OPERATORS = ("eq", "ne", "in", "not_in", "between", "gt", "gte", "lt", "lte", "exists", "contains")
# Opt-out keywords matched as whole words or phrases in a lead's last message, after
# Unicode normalisation (NFKC, case-folded, accents and repeated spaces ignored): "ＳＴＯＰ",
# "Stop!" and "no  mas mensajes" all match. Single words only where they are unambiguous in
# a sales conversation: "cancelar" ("posso cancelar a qualquer momento?"), "basta" ("basta
# clicar"), "sair" or "plus de messages" ("more messages" in French) would opt out people
# asking ordinary questions, so those languages get phrases instead.
DEFAULT_OPTOUT_KEYWORDS: tuple[str, ...] = (
    # English
    "stop", "unsubscribe", "no more messages", "remove me from your list",
    "do not message me", "don't message me", "do not contact me", "don't contact me",
    "leave me alone",
    # Spanish
    "baja", "darme de baja", "no más mensajes", "no quiero más mensajes", "no me escribas",
    "deja de escribirme", "dejen de escribirme", "desuscribir", "desuscribirme",
    "cancelar suscripción",
    # Portuguese
    "parar", "pare", "não quero mais mensagens", "chega de mensagens", "não me mande mais",
    "descadastrar", "descadastre", "cancelar inscrição",
    # French
    "arrêter", "arrêtez", "désabonner", "désinscrire", "désinscription", "ne plus recevoir",
    "plus aucun message", "ne m'écrivez plus",
    # German
    "stopp", "abmelden", "abbestellen", "keine nachrichten mehr", "keine weiteren nachrichten",
    "nicht mehr schreiben",
    # Italian
    "disiscrivimi", "disiscrivere", "cancellami", "basta messaggi", "non scrivermi più",
    "non voglio più messaggi", "annulla iscrizione",
)  # fmt: skip
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")

# The documented ranges (README, "Configuration"). Every number in the file is finite
# (`.inf` and `.nan` are errors) and within these bounds, so no value can overflow a date,
# a counter or the database at 9:00.
HOURS_MAX = 8760  # delays, silences, intervals, windows: at most a year
SCORE_BOUND = 1_000_000  # min_score, max_score, priority: within +-1e6
COUNT_MAX = 1000  # follow-ups per lead, per day, per sequence
WEIGHT_MAX = 1_000_000
RATE_MAX = 1_000_000  # messages_per_hour (Instagram allows about 300 a second)
TEXT_BYTES_MAX = 100_000  # channel.max_text_bytes
# The file itself: its size, and how many YAML nodes it expands to (anchors and aliases
# count once per use, so an "alias bomb" stops here instead of eating the memory).
FILE_BYTES_MAX = 1_000_000
NODES_MAX = 100_000
DEPTH_MAX = 64
# The channel's own limit on a text message, in UTF-8 bytes (Instagram refuses longer ones
# with code 100). None: no limit but the template sandbox's.
TEXT_LIMITS: dict[str, int | None] = {"instagram": 1000, "webhook": None, "console": None}
LOOPBACK_HOSTS = ("localhost",)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_url(value: str, what: str) -> str:
    """An absolute https:// URL; plain http:// only to this machine (tests, a local relay)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"{what} {value!r} is not an absolute URL; write it as https://host[/path]"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"{what} {value!r}: plain http:// sends tokens and messages in clear text; use "
            "https:// (http:// is allowed only to localhost/127.0.0.1, for tests)"
        )
    return value


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_zone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Europe/Madrid"
        ) from exc
    return value


class QuietHours(_Model):
    start: str = Field(
        description=(
            "When quiet hours begin, in the lead's own zone (`timezone` column, else "
            "settings.timezone)."
        ),
        examples=["21:00"],
    )
    end: str = Field(description="When they end; may be the next morning.", examples=["09:00"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(str(v)):
            raise ValueError(f'{v!r} is not a time of day; write it as "HH:MM", e.g. "21:00"')
        return v


class Settings(_Model):
    """Global settings; an account may override any of them."""

    timezone: str = Field(
        "UTC",
        description="The operator's IANA zone: report days, cron slots (`run_times`), daily caps.",
        examples=["Europe/Madrid"],
    )
    min_score: int = Field(
        2,
        ge=-SCORE_BOUND,
        le=SCORE_BOUND,
        description="Lowest lead score that gets follow-ups.",
        examples=[2],
    )
    max_score: int = Field(
        6,
        ge=-SCORE_BOUND,
        le=SCORE_BOUND,
        description="Highest lead score that gets follow-ups (above: hot, left to humans).",
        examples=[6],
    )
    no_response_hours: float = Field(
        24,
        ge=0,
        le=HOURS_MAX,
        description=(
            "Hours the lead must have been silent before any follow-up. On Instagram it must fit "
            "in the 24 h window."
        ),
        examples=[4],
    )
    min_interval_hours: float = Field(
        24,
        ge=0,
        le=HOURS_MAX,
        description="Hours between two follow-ups to one person.",
        examples=[12],
    )
    max_followups_per_lead: int = Field(
        5,
        ge=0,
        le=COUNT_MAX,
        description="Follow-ups a person gets in total, across sequences.",
        examples=[5],
    )
    max_per_lead_per_day: int = Field(
        1,
        ge=0,
        le=COUNT_MAX,
        description="Follow-ups a person gets per day (operator's days).",
        examples=[1],
    )
    quiet_hours: QuietHours | None = Field(
        None,
        description=(
            "No follow-up in this span of the lead's local time (`start`, `end`); none when absent."
        ),
        examples=[{"start": "21:00", "end": "09:00"}],
    )
    batch_size: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Sends per batch; the run heartbeats between batches.",
        examples=[100],
    )
    optout_keywords: tuple[str, ...] = Field(
        DEFAULT_OPTOUT_KEYWORDS,
        description=(
            "Whole words or phrases in the lead's last message that opt it out (Unicode-"
            "normalised, case- and accent-insensitive); setting it replaces the defaults "
            "(English, Spanish, Portuguese, French, German, Italian)."
        ),
        examples=[["stop", "unsubscribe", "no more messages"]],
    )
    optout_keywords_extra: tuple[str, ...] = Field(
        (),
        description="Opt-out words or phrases added to optout_keywords (keeps the defaults).",
        examples=[["basta ya"]],
    )
    lead_table: str = Field(
        "leads",
        description="The host app's lead table or view (optionally schema.table).",
        examples=["leads"],
    )
    run_budget_minutes: float = Field(
        240,
        gt=0,
        le=24 * 60,
        description=(
            "Longest a run may take; by default a run also stops 5 minutes before the next slot."
        ),
        examples=[240],
    )
    pull_forward: bool = Field(
        False,
        description="Send a step due after the window closes at the last slot before it closes.",
        examples=[True],
    )
    pull_forward_hours: float = Field(
        6,
        ge=0,
        le=HOURS_MAX,
        description="At most this many hours early, with pull_forward.",
        examples=[6],
    )
    run_times: tuple[str, ...] = Field(
        ("09:00", "14:00", "18:00"),
        description=(
            "The cron slots, in settings.timezone: budgets, pull-forward and `followup plan` use "
            "them."
        ),
        examples=[["09:00", "14:00", "18:00"]],
    )
    breaker_min_sends: int = Field(
        10,
        ge=1,
        le=100_000,
        description="Sends before the circuit breaker may stop an account.",
        examples=[10],
    )
    breaker_failure_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of permanent failures that stops an account for the run.",
        examples=[0.5],
    )
    max_in_flight: int = Field(
        32,
        ge=1,
        le=256,
        description=(
            "Requests one run keeps in flight at most, across all accounts (each account "
            "still sends one message at a time, in its own order, within its own caps)."
        ),
        examples=[16],
    )
    account_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "Deprecated: the old name of `max_in_flight`, used when that is not given. Rename it."
        ),
        examples=[4],
    )

    store_bodies: bool = Field(
        False,
        description=(
            "Without FOLLOWUP_ENCRYPTION_KEY, keep each message's text in clear in the tracking "
            "table (by default only its sequence, message and variant ids and a keyed hash of "
            "it). With a key, texts are always kept, encrypted."
        ),
        examples=[True],
    )

    @model_validator(mode="before")
    @classmethod
    def _old_account_workers(cls, data: Any) -> Any:
        """A config of before `max_in_flight` keeps its bound: `account_workers` accounts
        sending one message at a time were that many requests in flight."""
        if (
            isinstance(data, dict)
            and data.get("account_workers") is not None
            and data.get("max_in_flight") is None
        ):
            data = {**data, "max_in_flight": data["account_workers"]}
        return data

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str | None:
        return _check_zone(v)

    @field_validator("lead_table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", v):
            raise ValueError(f"{v!r} is not a plain table name (letters, digits, _)")
        return v

    @field_validator("run_times")
    @classmethod
    def _times(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for t in v:
            if not _HHMM.match(str(t)):
                raise ValueError(f'{t!r} is not a time of day; write it as "HH:MM"')
        return v

    @property
    def all_optout_keywords(self) -> tuple[str, ...]:
        """``optout_keywords`` and ``optout_keywords_extra``: every keyword that opts out."""
        return self.optout_keywords + tuple(
            k for k in self.optout_keywords_extra if k not in self.optout_keywords
        )

    @field_validator("optout_keywords", "optout_keywords_extra")
    @classmethod
    def _keywords(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_keywords(v)

    @model_validator(mode="after")
    def _range(self) -> Settings:
        if self.min_score > self.max_score:
            raise ValueError(
                f"@min_score min_score {self.min_score} is above max_score {self.max_score}"
            )
        return self


def _check_keywords(v: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for kw in v or ():
        if not kw.strip():
            raise ValueError("a blank opt-out keyword matches nothing; remove it")
    return v


class Channel(_Model):
    type: Literal["instagram", "webhook", "console"] = Field(
        "console",
        description=(
            "Where messages go: the Instagram Graph API, a webhook of the host app, or the "
            "terminal."
        ),
        examples=["instagram"],
    )
    api_base: str = Field(
        "https://graph.instagram.com",
        description="Graph API base URL (point it at a local fake for tests or staging).",
        examples=["https://graph.instagram.com"],
    )
    api_version: str = Field(
        "v21.0", description="Graph API version in the URL path.", examples=["v21.0"]
    )
    # Instagram's 24-hour window by default; a console or webhook channel has none unless
    # the file gives one (a host app relaying to Instagram should say `window_hours: 24`).
    window_hours: float | None = Field(
        24,
        gt=0,
        le=HOURS_MAX,
        description=(
            "Messaging window after the lead's last message; null for none. Default 24 on "
            "instagram, none on console and webhook."
        ),
        examples=[24],
    )
    # The longest text the channel takes, in UTF-8 bytes: 1000 on Instagram; none by
    # default for console and webhook (a host app relaying to Instagram should say 1000).
    max_text_bytes: int | None = Field(
        None,
        ge=1,
        le=TEXT_BYTES_MAX,
        description=(
            "Longest text the channel takes, in UTF-8 bytes; null for none. Default 1000 on "
            "instagram, none on console and webhook."
        ),
        examples=[1000],
    )
    messages_per_hour: int = Field(
        200,
        ge=1,
        le=RATE_MAX,
        description="Per account, over a sliding 60 minutes that holds across runs and hosts.",
        examples=[200],
    )
    messages_per_day: int | None = Field(
        None,
        ge=1,
        le=24 * RATE_MAX,
        description="Per account, per operator's day (settings.timezone); null for no daily cap.",
        examples=[1000],
    )
    timeout_seconds: float = Field(
        10,
        gt=0,
        le=300,
        description="Read timeout of one API call; a timed-out send is `unknown`, never resent.",
        examples=[10],
    )
    connect_timeout_seconds: float = Field(
        5,
        gt=0,
        le=300,
        description="Connect timeout (a refused or timed-out connect is retried: nothing left).",
        examples=[5],
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of throttled or transient errors, with backoff and jitter.",
        examples=[3],
    )
    max_retry_wait_seconds: float = Field(
        60,
        ge=0,
        le=3600,
        description=(
            "Longest wait for one retry (Retry-After included); longer defers to the next run."
        ),
        examples=[60],
    )
    url: str | None = Field(
        None,
        description=(
            "Webhook channel: where to POST each message as JSON (required for type webhook)."
        ),
        examples=["https://app.example.com/hooks/followup"],
    )
    secret_env: str | None = Field(
        None,
        description="Webhook channel: environment variable holding the HMAC signing secret.",
        examples=["FOLLOWUP_WEBHOOK_SECRET"],
    )

    @model_validator(mode="before")
    @classmethod
    def _default_window(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = data.get("type", "console")
        if kind != "instagram" and "window_hours" not in data:
            data = {**data, "window_hours": None}
        if "max_text_bytes" not in data and isinstance(kind, str):
            data = {**data, "max_text_bytes": TEXT_LIMITS.get(kind)}
        return data

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v: str) -> str:
        return _check_url(v, "api_base")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, "url")

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.match(r"^v\d{1,3}\.\d{1,3}$", v):
            raise ValueError(f"{v!r} is not a Graph API version; write it like v21.0")
        return v

    @model_validator(mode="after")
    def _webhook(self) -> Channel:
        if self.type == "webhook" and not self.url:
            raise ValueError("@type a webhook channel needs `url:` (where to POST the messages)")
        limit = TEXT_LIMITS.get(self.type)
        if limit is not None and self.max_text_bytes is not None and self.max_text_bytes > limit:
            raise ValueError(
                f"@max_text_bytes {self.type} refuses texts over {limit} UTF-8 bytes; "
                f"use at most {limit}"
            )
        return self


# Settings that one run applies to every account: not overridable per account.
STORE_WIDE_SETTINGS = (
    "lead_table",
    "run_times",
    "run_budget_minutes",
    "max_in_flight",
    "account_workers",
    "store_bodies",
)
# Keys of SettingsOverride that are not Settings fields: the channel's per-account caps.
CHANNEL_OVERRIDES = ("messages_per_hour", "messages_per_day")


def _optional(model: type[BaseModel], names: Iterable[str]) -> dict[str, Any]:
    """The named fields of ``model``, each optional (default None) with the same bounds,
    description and examples: an override restates nothing, so it cannot drift."""
    fields: dict[str, Any] = {}
    for name in names:
        info = FieldInfo.merge_field_infos(model.model_fields[name], default=None)
        fields[name] = (model.model_fields[name].annotation | None, info)
    return fields


class _OverrideChecks(_Model):
    """The checks of Settings that apply to an override's fields when they are set."""

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return _check_zone(v)

    @field_validator("optout_keywords", "optout_keywords_extra", check_fields=False)
    @classmethod
    def _keywords(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _check_keywords(v)

    @model_validator(mode="after")
    def _range(self) -> _OverrideChecks:
        low, high = getattr(self, "min_score", None), getattr(self, "max_score", None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"@min_score min_score {low} is above max_score {high}")
        return self


SettingsOverride = create_model(
    "SettingsOverride",
    __base__=_OverrideChecks,
    __doc__="Per-account overrides: any Settings field except the store-wide ones (one run "
    "serves every account), plus the channel's per-account caps. All optional.",
    **_optional(Settings, [n for n in Settings.model_fields if n not in STORE_WIDE_SETTINGS]),
    **_optional(Channel, CHANNEL_OVERRIDES),
)


class Account(_Model):
    id: str = Field(description="Matches leads.account_id.", examples=["acct_shop"])
    user_id: str | None = Field(
        None,
        description="Owner in the host app, recorded on tracking rows when the lead has none.",
        examples=["u_1"],
    )
    enabled: bool = Field(
        True,
        description="false: the account's leads get nothing (its runs are skipped).",
        examples=[True],
    )
    ig_user_id: str | None = Field(
        None,
        description="The Instagram professional account's id, for the Send API URL.",
        examples=["17841400000000001"],
    )
    token_env: str | None = Field(
        None,
        description=(
            "Environment variable holding the account's access token (never the token itself)."
        ),
        examples=["FOLLOWUP_TOKEN_ACCT_SHOP"],
    )
    settings: SettingsOverride = Field(
        SettingsOverride(),
        description="Overrides of `settings` for this account.",
        examples=[{"max_followups_per_lead": 3}],
    )

    @field_validator("ig_user_id", mode="before")
    @classmethod
    def _str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


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


def _blank(template: str | None) -> bool:
    return template is not None and not template.strip()


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


class Config(_Model):
    version: Literal[1] = Field(1, description="The file format's version.", examples=[1])
    settings: Settings = Field(
        Settings(), description="Global settings (below).", examples=[{"timezone": "Europe/Madrid"}]
    )
    channel: Channel = Field(
        Channel(), description="The channel (below).", examples=[{"type": "instagram"}]
    )
    accounts: tuple[Account, ...] = Field(
        (),
        description="The accounts (below).",
        examples=[[{"id": "acct_shop", "token_env": "FOLLOWUP_TOKEN_ACCT_SHOP"}]],
    )
    sequences: tuple[Sequence, ...] = Field(
        (),
        description="The sequences (below).",
        examples=[
            [{"id": "warm", "messages": [{"id": "warm-1", "delay_hours": 4, "template": "Hi"}]}]
        ],
    )
    # Custom attributes the host app fills (`lead.attributes.<key>`): templates may use them
    # without a `sample_lead:` value; `sequences check --db` checks them against the store.
    attributes: tuple[str, ...] = Field(
        (),
        description=(
            "Custom attributes the host app fills (lead.attributes.<key>): templates may use "
            "them; `sequences check --db` checks them against the store."
        ),
        examples=[["interest", "coupon"]],
    )
    sample_lead: dict[str, Any] | None = Field(
        None,
        description="Extra lead fields for `sequences check` to render templates with.",
        examples=[{"first_name": "Ana", "attributes": {"interest": "pricing"}}],
    )

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(
                    f"{name!r} is not an attribute name a template can use "
                    "(letters, digits, _; as in lead.attributes.name)"
                )
        return v

    def account(self, account_id: str | None) -> Account | None:
        for a in self.accounts:
            if a.id == account_id:
                return a
        return None

    def settings_for(self, account: Account | None) -> Settings:
        if account is None:
            return self.settings
        # Asked for every lead a run decides: merged once per account (the config is frozen).
        cached = self._merged_settings.get(account.id)
        if cached is not None and cached[0] is account:
            return cached[1]
        overrides = account.settings.model_dump(exclude_none=True)
        for key in CHANNEL_OVERRIDES:
            overrides.pop(key, None)
        merged = self.settings.model_copy(update=overrides) if overrides else self.settings
        self._merged_settings[account.id] = (account, merged)
        return merged

    @cached_property
    def _merged_settings(self) -> dict[str, tuple[Account, Settings]]:
        return {}

    def rate_limits(self, account: Account | None) -> tuple[int, int | None]:
        """(messages per hour, messages per day or None) for an account: its override, else
        the channel's."""
        o = account.settings if account is not None else SettingsOverride()
        hour = o.messages_per_hour or self.channel.messages_per_hour
        day = o.messages_per_day or self.channel.messages_per_day
        return hour, day

    def sequences_by_priority(self) -> list[Sequence]:
        return self._by_priority

    @cached_property
    def _by_priority(self) -> list[Sequence]:
        order = {s.id: i for i, s in enumerate(self.sequences)}
        return sorted(self.sequences, key=lambda s: (-s.priority, order[s.id]))


# ----------------------------------------------------------------------- loading


@dataclass
class Problem:
    line: int | None
    where: str
    what: str
    level: Literal["error", "warning"] = "error"

    def format(self, path: str) -> str:
        loc = f"{path}:{self.line}" if self.line else path
        prefix = "warning: " if self.level == "warning" else ""
        return (
            f"{loc}: {prefix}{self.where}: {self.what}"
            if self.where
            else f"{loc}: {prefix}{self.what}"
        )


@dataclass
class LoadedConfig:
    config: Config
    path: str
    lines: dict[tuple, int] = field(default_factory=dict)
    digest: str = ""

    def line_of(self, *loc: Any) -> int | None:
        return _line_for(self.lines, tuple(loc))


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _compose(text: str, path: str) -> tuple[Any, dict[tuple, int]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[tuple, int] = {}
        dupes: list[Problem] = []
        visited = [0]

        def walk(n: yaml.Node, loc: tuple) -> None:
            # Aliases are expanded here as the schema would see them: bound the work first.
            visited[0] += 1
            if visited[0] > NODES_MAX or len(loc) > DEPTH_MAX:
                what = (
                    f"nested deeper than {DEPTH_MAX} levels"
                    if len(loc) > DEPTH_MAX
                    else f"expands to more than {NODES_MAX} values (anchors and aliases "
                    "count once per use); simplify it"
                )
                top = loc[:1]  # an alias points into another key: name the key that uses it
                at = lines.get(top, n.start_mark.line + 1)
                raise ConfigError(f"{path}:{at}: {_where(top) or 'the file'}: {what}")
            lines.setdefault(loc, n.start_mark.line + 1)
            if isinstance(n, yaml.MappingNode):
                seen: set[str] = set()
                for k, v in n.value:
                    key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                    if key in seen:
                        dupes.append(
                            Problem(k.start_mark.line + 1, _where(loc + (key,)), "duplicate key")
                        )
                    seen.add(key)
                    lines[loc + (key,)] = k.start_mark.line + 1
                    walk(v, loc + (key,))
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    lines[loc + (i,)] = item.start_mark.line + 1
                    walk(item, loc + (i,))

        walk(node, ())
        if dupes:
            raise ConfigError(dupes[0].format(path) + " (each key may appear once)")
        data = loader.construct_document(node)
        return data, lines
    finally:
        loader.dispose()


def parse_config(text: str, path: str = "sequences.yaml") -> LoadedConfig:
    """Parse and validate the text of a sequences.yaml; raise ConfigError on the first problems."""
    if len(text) > FILE_BYTES_MAX:
        raise ConfigError(
            f"{path}: {len(text)} characters; a sequences.yaml may hold at most "
            f"{FILE_BYTES_MAX} (is this the right file?)"
        )
    try:
        data, lines = _compose(text, path)
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply to read (at most {DEPTH_MAX} levels)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; see the README for an example sequences.yaml"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping (version, settings, ...)")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [_problem_from_pydantic(err, lines) for err in exc.errors()]
        raise ConfigError("\n".join(p.format(path) for p in _dedupe(problems))) from None
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return LoadedConfig(config=config, path=path, lines=lines, digest=digest)


def load_config(path: str | Path) -> LoadedConfig:
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > FILE_BYTES_MAX * 4:  # UTF-8: up to 4 bytes a char
            raise ConfigError(
                f"{p}: {p.stat().st_size} bytes; a sequences.yaml may hold at most "
                f"{FILE_BYTES_MAX} characters (is this the right file?)"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file; pass --config PATH, set FOLLOWUP_CONFIG, "
            "or copy the example sequences.yaml from the README"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read it: {exc}") from None
    loaded = parse_config(text, str(path))
    from .redact import register_config

    register_config(loaded.config)  # its tokens never come out of this process again
    return loaded


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.line, p.where, p.what)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _problem_from_pydantic(err: dict, lines: dict[tuple, int]) -> Problem:
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    msg = err.get("msg", "invalid")
    if kind == "extra_forbidden":
        msg = "unknown key (check the spelling; see the README for the allowed keys)"
    elif kind == "missing":
        msg = "required key is missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        if msg.startswith("@"):  # "@field message": the problem belongs to that key
            key, _, msg = msg[1:].partition(" ")
            loc = loc + (key,)
    elif kind == "literal_error":
        msg = f"{msg} (got {err.get('input')!r})"
    elif "input" in err and kind not in ("model_type",):
        msg = f"{msg} (got {err.get('input')!r})"
    return Problem(_line_for(lines, loc), _where(loc), msg)
