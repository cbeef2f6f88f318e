"""``settings:``: the global settings (and their quiet hours); an account may override them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from .bounds import (
    _HHMM,
    COUNT_MAX,
    DEFAULT_OPTOUT_KEYWORDS,
    HOURS_MAX,
    SCORE_BOUND,
    _check_keywords,
    _check_zone,
    _Model,
)


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
