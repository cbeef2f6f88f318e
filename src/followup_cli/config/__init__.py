"""sequences.yaml -> a validated, frozen ``Config``, with ``file:line`` errors.

The YAML is parsed with line numbers kept, validated by pydantic models that forbid
unknown keys, and every problem is reported as ``file:line: where: what``. Semantic
checks (unique ids, condition fields, templates rendered against a sample lead, timing
that cannot fit the channel's messaging window) live in ``configcheck.check_config``.

One module a concern: ``bounds`` (the documented ranges, the base model, shared value
checks), one module a section of the file (``settings``, ``channel``, ``accounts``,
``sequences``), ``root`` (the whole file and the views a run asks of it) and ``loading``
(YAML with line numbers, ``parse_config``, ``load_config``, ``Problem``). Import from
here: ``from followup_cli.config import load_config, Config``.
"""

from __future__ import annotations

from .accounts import CHANNEL_OVERRIDES, STORE_WIDE_SETTINGS, Account, SettingsOverride
from .bounds import (
    _ID,
    COUNT_MAX,
    DEFAULT_OPTOUT_KEYWORDS,
    DEPTH_MAX,
    FILE_BYTES_MAX,
    HOURS_MAX,
    LEAD_COLUMNS,
    LOOPBACK_HOSTS,
    NODES_MAX,
    OPERATORS,
    RATE_MAX,
    SCORE_BOUND,
    TEXT_BYTES_MAX,
    TEXT_LIMITS,
    WEIGHT_MAX,
)
from .channel import Channel
from .loading import LoadedConfig, Problem, _dedupe, _where, load_config, parse_config
from .root import Config
from .sequences import Condition, Message, Sequence, Variant
from .settings import QuietHours, Settings

__all__ = [
    "CHANNEL_OVERRIDES",
    "COUNT_MAX",
    "DEFAULT_OPTOUT_KEYWORDS",
    "DEPTH_MAX",
    "FILE_BYTES_MAX",
    "HOURS_MAX",
    "LEAD_COLUMNS",
    "LOOPBACK_HOSTS",
    "NODES_MAX",
    "OPERATORS",
    "RATE_MAX",
    "SCORE_BOUND",
    "STORE_WIDE_SETTINGS",
    "TEXT_BYTES_MAX",
    "TEXT_LIMITS",
    "WEIGHT_MAX",
    "_ID",
    "_dedupe",
    "_where",
    "Account",
    "Channel",
    "Condition",
    "Config",
    "LoadedConfig",
    "Message",
    "Problem",
    "QuietHours",
    "Sequence",
    "Settings",
    "SettingsOverride",
    "Variant",
    "load_config",
    "parse_config",
]
