"""The whole file (``Config``) and what a run asks of it: an account by id, an account's
settings merged with its overrides, its rate limits, the sequences by priority."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, field_validator

from .accounts import CHANNEL_OVERRIDES, Account, SettingsOverride
from .bounds import _Model
from .channel import Channel
from .sequences import Sequence
from .settings import Settings


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
        return None if account_id is None else self._accounts_by_id.get(account_id)

    @cached_property
    def _accounts_by_id(self) -> dict[str, Account]:
        """Each account by id, the first of a repeated id (asked for every lead decided)."""
        out: dict[str, Account] = {}
        for a in self.accounts:
            out.setdefault(a.id, a)
        return out

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
