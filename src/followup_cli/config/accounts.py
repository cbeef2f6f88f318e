"""``accounts:``: each account, and the settings it may override (every setting but the
store-wide ones, plus the channel's per-account caps)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from .bounds import _check_keywords, _check_zone, _Model
from .channel import Channel
from .settings import Settings

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
