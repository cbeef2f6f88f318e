"""Docs generated from the code: ``docs/configuration.md`` from the pydantic schema of
``sequences.yaml`` (the ``config`` package), the way sqlite-utils keeps its CLI reference current.

Regenerate after changing the schema::

    python -m followup_cli.docsgen            # rewrites docs/configuration.md
    python -m followup_cli.docsgen --check    # exit 1 when the file is stale (the tests do this)
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import (
    OPERATORS,
    Account,
    Channel,
    Condition,
    Config,
    Message,
    QuietHours,
    Sequence,
    Settings,
    SettingsOverride,
    Variant,
)

DOC_PATH = Path("docs") / "configuration.md"

OPERATOR_DOCS: dict[str, tuple[str, str]] = {
    "eq": ("equal (numbers compare as numbers)", "{field: status, op: eq, value: qualified}"),
    "ne": ("not equal", "{field: status, op: ne, value: lost}"),
    "in": ("one of a list", "{field: attributes.interest, op: in, value: [pricing, demo]}"),
    "not_in": ("none of a list", "{field: status, op: not_in, value: [lost, spam]}"),
    "between": ("within [low, high], inclusive", "{field: score, op: between, value: [4, 6]}"),
    "gt": ("greater than", "{field: score, op: gt, value: 3}"),
    "gte": ("greater than or equal", "{field: score, op: gte, value: 4}"),
    "lt": ("less than", "{field: score, op: lt, value: 6}"),
    "lte": ("less than or equal", "{field: score, op: lte, value: 5}"),
    "exists": (
        "the field has a value (`value: false`: it has none)",
        "{field: attributes.coupon, op: exists}",
    ),
    "contains": (
        "text contains (case-insensitive), or a list holds the value",
        "{field: last_inbound_text, op: contains, value: price}",
    ),
}

# (heading, YAML path, model, intro)
SECTIONS: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    ("Top level", "", Config, "The file is one mapping; unknown keys are errors."),
    (
        "settings",
        "settings.",
        Settings,
        "Global settings. An account may override most of them (`accounts[].settings`).",
    ),
    ("settings.quiet_hours", "settings.quiet_hours.", QuietHours, "Times in the lead's zone."),
    ("channel", "channel.", Channel, "How messages go out, and the channel's limits."),
    ("accounts[]", "accounts[].", Account, "One entry per Instagram professional account."),
    ("sequences[]", "sequences[].", Sequence, "The follow-up sequences."),
    (
        "sequences[].trigger[]",
        "sequences[].trigger[].",
        Condition,
        "Every condition must hold. A condition is `{field, op, value}`, or `any:` / `all:` "
        "with a list of conditions.",
    ),
    ("sequences[].messages[]", "sequences[].messages[].", Message, "The steps, in order."),
    (
        "sequences[].messages[].variants[]",
        "sequences[].messages[].variants[].",
        Variant,
        "A/B variants: a stable hash of (lead, sequence, message) picks one, by weight.",
    ),
)


def _type(ann: Any) -> str:
    origin = get_origin(ann)
    args = get_args(ann)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_type(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is tuple:
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "mapping"
    return {int: "integer", float: "number", str: "text", bool: "boolean"}.get(ann, "any")


def _yaml(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True) or {}
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(
        value, default_flow_style=True, width=1000, allow_unicode=True, sort_keys=False
    ).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _default(field: Any) -> str:
    if field.is_required() or field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "none"
    if isinstance(field.default, BaseModel):
        return "(see below)"
    return f"`{_yaml(field.default)}`"


def _range(field: Any) -> str:
    low = high = ""
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            low = f"≥ {m.ge:g}"
        elif isinstance(m, annotated_types.Gt):
            low = f"> {m.gt:g}"
        elif isinstance(m, annotated_types.Le):
            high = f"≤ {m.le:g}"
        elif isinstance(m, annotated_types.Lt):
            high = f"< {m.lt:g}"
    return ", ".join(x for x in (low, high) if x)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_rows(model: type[BaseModel], prefix: str) -> list[tuple[str, ...]]:
    """(key, type, default, range, description, example) per field of ``model``."""
    rows = []
    for name, field in model.model_fields.items():
        example = field.examples[0] if field.examples else None
        example_text = f"`{name}: {_yaml(example)}`" if field.examples else ""
        rows.append(
            (
                f"`{prefix}{name}`",
                _type(field.annotation),
                _default(field),
                _range(field),
                _cell(field.description or ""),
                _cell(example_text),
            )
        )
    return rows


def undocumented() -> list[str]:
    """Schema fields that lack a description or an example (the tests want none)."""
    missing = []
    for _, prefix, model, _ in SECTIONS:
        for name, field in model.model_fields.items():
            if not field.description or not field.examples:
                missing.append(f"{prefix}{name}")
    return missing


def configuration_markdown() -> str:
    out: list[str] = [
        "# `sequences.yaml` reference",
        "",
        "<!-- Generated from the schema in src/followup_cli/config/ by "
        "`python -m followup_cli.docsgen`; do not edit by hand: a test fails when it is "
        "stale. -->",
        "",
        "Every key the file accepts, with its type, default, allowed range and an example. "
        "Unknown keys are errors (`followup sequences check` names the file and line). "
        'Durations are hours (decimals allowed); times of day are `"HH:MM"`.',
        "",
    ]
    for heading, prefix, model, intro in SECTIONS:
        out += [f"## {heading}", "", intro, ""]
        out.append("| key | type | default | range | meaning | example |")
        out.append("|---|---|---|---|---|---|")
        for row in field_rows(model, prefix):
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        if model is Account:
            out += _account_settings_note()
        if model is Condition:
            out += _operator_table()
    out += [
        "## Templates",
        "",
        "`template:` is Jinja2, rendered in a sandbox with undefined variables as errors. "
        "It sees `lead` (every lead column; `lead.attributes.x` for custom fields), "
        "`account`, `sequence`, `message` and `now`. `followup sequences check` renders "
        "every template against a sample lead (`sample_lead:` adds to it).",
        "",
    ]
    return "\n".join(out)


def _account_settings_note() -> list[str]:
    """The lines under the accounts table: the settings an account overrides."""
    channel_keys = [k for k in SettingsOverride.model_fields if k in Channel.model_fields]
    keys = ", ".join(f"`{k}`" for k in SettingsOverride.model_fields if k not in channel_keys)
    return [
        "`accounts[].settings` overrides these `settings` keys for one account "
        f"(same types and ranges): {keys}"
        + (
            "; and the channel's per-account caps " + ", ".join(f"`{k}`" for k in channel_keys)
            if channel_keys
            else ""
        )
        + ".",
        "",
    ]


def _operator_table() -> list[str]:
    """The lines under the conditions table: the fields a condition reads, and the
    operators."""
    out = [
        "Fields: any lead column (`id`, `account_id`, `score`, `status`, "
        "`last_inbound_text`, ...) or `attributes.<key>` (dots go deeper). "
        "A time column (`last_inbound_at`, `last_outbound_at`, `converted_at`) compares "
        "with an ISO 8601 time, quoted or not (`value: 2026-03-01`; UTC when no offset "
        "is given). A text and a number do not compare: no ordering operator holds.",
        "",
        "| op | holds when | example |",
        "|---|---|---|",
    ]
    for op in OPERATORS:
        meaning, example = OPERATOR_DOCS[op]
        out.append(f"| `{op}` | {_cell(meaning)} | `{example}` |")
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[args.index("--out") + 1]) if "--out" in args else DOC_PATH
    text = configuration_markdown()
    if "--check" in args:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run `python -m followup_cli.docsgen`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
