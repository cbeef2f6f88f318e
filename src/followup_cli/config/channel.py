"""``channel:``: where the messages go (Instagram, a webhook, the console) and its limits."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .bounds import HOURS_MAX, RATE_MAX, TEXT_BYTES_MAX, TEXT_LIMITS, _check_url, _Model


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
