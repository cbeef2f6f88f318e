"""sequences.yaml: every mistake caught before deploy, reported as file:line: where: what."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from followup_cli.config import parse_config
from followup_cli.configcheck import check_config
from followup_cli.errors import ConfigError
from tests.helpers import base_config


def text_of(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def problems(cfg: dict[str, Any]) -> list[str]:
    loaded = parse_config(text_of(cfg), "seq.yaml")
    return [p.format("seq.yaml") for p in check_config(loaded) if p.level == "error"]


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_the_repository_example_is_valid() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    loaded = parse_config((root / "sequences.yaml").read_text(), "sequences.yaml")
    assert [p for p in check_config(loaded) if p.level == "error"] == []
    assert [p for p in check_config(loaded) if p.level == "warning"] == []


@pytest.mark.parametrize(
    ("mutate", "needle", "expect"),
    [
        (lambda c: c["sequences"][0].update(max_folowups=2), "max_folowups", "unknown key"),
        (lambda c: c["settings"].update(min_scor=1), "min_scor", "unknown key"),
        (
            lambda c: c["sequences"][0]["messages"][0].update(delay_hours="soon"),
            "delay_hours: soon",
            "valid number",
        ),
        (
            lambda c: c["sequences"][0]["messages"][0].update(delay_hours=-1),
            "delay_hours: -1",
            "greater than or equal",
        ),
        (
            lambda c: c["sequences"][0]["messages"][0].update(type="image"),
            "type: image",
            "media_url",
        ),
        (lambda c: c["sequences"][0]["messages"][0].update(type="gif"), "type: gif", "got 'gif'"),
        (lambda c: c["sequences"][0]["trigger"][0].update(op="inn"), "op: inn", "unknown op 'inn'"),
        (
            lambda c: c["sequences"][0]["trigger"][0].update(field="scroe"),
            "field: scroe",
            "unknown field 'scroe'",
        ),
        (lambda c: c["sequences"][0]["trigger"][0].update(value=3), "value: 3", "list of two"),
        (lambda c: c["settings"].update(timezone="Mars/Base"), "Mars/Base", "unknown time zone"),
        (
            lambda c: c["settings"].update(quiet_hours={"start": "9pm", "end": "09:00"}),
            "9pm",
            "HH:MM",
        ),
        (lambda c: c["settings"].update(min_score=7), "min_score: 7", "above max_score"),
        (lambda c: c["channel"].update(type="sms"), "type: sms", "got 'sms'"),
    ],
)
def test_schema_errors_name_the_line(mutate: Any, needle: str, expect: str) -> None:
    cfg = base_config()
    mutate(cfg)
    text = text_of(cfg)
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "seq.yaml")
    message = str(exc.value)
    assert f"seq.yaml:{line_of(text, needle)}:" in message, message
    assert expect in message


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (
            lambda c: c["sequences"].append(copy.deepcopy(c["sequences"][0])),
            "duplicate sequence id 's1'",
        ),
        (lambda c: c["sequences"][0]["messages"][1].update(id="m1"), "duplicate message id 'm1'"),
        (
            lambda c: c["sequences"][0]["messages"][0].update(template="Hi {{ lead.frist_name }}"),
            "frist_name",
        ),
        (
            lambda c: c["sequences"][0]["messages"][0].update(template="Hi {{ lead.first_name "),
            "does not compile",
        ),
        (lambda c: c["sequences"][0]["messages"][1].update(delay_hours=1), "must not decrease"),
        (
            lambda c: c.update(channel={"type": "instagram"}, accounts=[{"id": "acct_a"}]),
            "needs `ig_user_id:`",
        ),
    ],
)
def test_semantic_errors_name_sequence_and_message(mutate: Any, expect: str) -> None:
    cfg = base_config()
    mutate(cfg)
    found = problems(cfg)
    assert any(expect in p for p in found), found
    assert all(p.startswith("seq.yaml:") for p in found)


def test_template_may_use_attributes_the_trigger_names() -> None:
    cfg = base_config()
    cfg["sequences"][0]["trigger"].append(
        {"field": "attributes.interest", "op": "in", "value": ["pricing"]}
    )
    cfg["sequences"][0]["messages"][0]["template"] = "About {{ lead.attributes.interest }}?"
    assert problems(cfg) == []


def test_an_undeclared_attribute_is_a_warning_naming_the_fix_not_an_error() -> None:
    # Custom attributes are data (issue 8): without a store, an attribute nothing declares
    # is a warning; `run` skips the leads that lack it and serves the others.
    cfg = base_config()
    cfg["sequences"][0]["messages"][0]["template"] = "{{ lead.attributes.colour }}"
    assert problems(cfg) == []
    loaded = parse_config(text_of(cfg), "seq.yaml")
    warnings = [p.format("seq.yaml") for p in check_config(loaded) if p.level == "warning"]
    assert len(warnings) == 1 and "lead.attributes.colour" in warnings[0], warnings
    assert "attributes: [colour]" in warnings[0] and "--db" in warnings[0]
    cfg["attributes"] = ["colour"]
    assert check_config(parse_config(text_of(cfg), "seq.yaml")) == []


def test_sample_lead_supplies_extra_attributes() -> None:
    cfg = base_config()
    cfg["sequences"][0]["messages"][0]["template"] = "{{ lead.attributes.city }}"
    cfg["sample_lead"] = {"attributes": {"city": "Madrid"}}
    assert problems(cfg) == []


def test_window_warning_when_a_step_can_never_fit() -> None:
    cfg = base_config()
    cfg["sequences"][0]["messages"][1]["delay_hours"] = 30
    text = text_of(cfg)
    loaded = parse_config(text, "seq.yaml")
    warnings = [p.format("seq.yaml") for p in check_config(loaded) if p.level == "warning"]
    assert len(warnings) == 1
    assert "can never be sent" in warnings[0] and "below 24" in warnings[0]
    assert warnings[0].startswith(f"seq.yaml:{line_of(text, 'delay_hours: 30')}:")


def test_window_warning_for_no_response_hours() -> None:
    cfg = base_config()
    cfg["settings"]["no_response_hours"] = 24
    loaded = parse_config(text_of(cfg), "seq.yaml")
    warnings = [p for p in check_config(loaded) if p.level == "warning"]
    never = [p.where for p in warnings if "no lead can ever be messaged" in p.what]
    assert never == ["settings.no_response_hours"], "once, not again for every account"


def test_window_warning_names_the_account_that_overrides_no_response_hours() -> None:
    cfg = base_config()
    cfg["accounts"][0]["settings"] = {"no_response_hours": 30}
    text = text_of(cfg)
    loaded = parse_config(text, "seq.yaml")
    never = [
        p.format("seq.yaml")
        for p in check_config(loaded)
        if p.level == "warning" and "no lead can ever be messaged" in p.what
    ]
    assert never == [
        f"seq.yaml:{line_of(text, 'no_response_hours: 30')}: warning: "
        "accounts[0].settings.no_response_hours: 30h of silence before a follow-up is not "
        "less than the channel's 24h messaging window: no lead can ever be messaged. "
        "Use no_response_hours below 24 (e.g. 4)"
    ]


def test_duplicate_keys_and_bad_yaml() -> None:
    with pytest.raises(ConfigError, match=r"seq.yaml:4: settings.min_score: duplicate key"):
        parse_config(
            "version: 1\nsettings:\n  min_score: 2\n  min_score: 3\n".replace(
                "  min_score: 2\n  ", "  min_score: 2\n  "
            ),
            "seq.yaml",
        )
    with pytest.raises(ConfigError, match=r"seq.yaml:\d+: not valid YAML"):
        parse_config("version: 1\nsettings: {timezone: [\n", "seq.yaml")
    with pytest.raises(ConfigError, match="empty"):
        parse_config("", "seq.yaml")


def test_account_overrides_merge_with_global_settings() -> None:
    cfg = base_config()
    cfg["accounts"][0]["settings"] = {"max_followups_per_lead": 3}
    loaded = parse_config(text_of(cfg), "seq.yaml")
    st = loaded.config.settings_for(loaded.config.accounts[0])
    assert st.max_followups_per_lead == 3
    assert st.timezone == "Europe/Madrid"


@pytest.mark.parametrize(
    ("channel", "window"),
    [
        ({"type": "instagram"}, 24),
        ({"type": "console"}, None),
        ({"type": "webhook", "url": "http://127.0.0.1:9/hook"}, None),
        ({"type": "console", "window_hours": 24}, 24),
        ({"type": "instagram", "window_hours": None}, None),
    ],
)
def test_the_messaging_window_defaults_by_channel(channel: dict[str, Any], window: Any) -> None:
    cfg = base_config()
    cfg["channel"] = channel
    assert parse_config(text_of(cfg), "seq.yaml").config.channel.window_hours == window


@pytest.mark.parametrize(
    "variants",
    [None, [{"id": "a"}, {"id": "b"}]],
    ids=["plain", "variants-sharing-the-template"],
)
def test_template_syntax_error_is_one_error_with_line_and_jinja_message(
    variants: list[dict[str, Any]] | None,
) -> None:
    cfg = base_config()
    msg = cfg["sequences"][0]["messages"][0]
    msg["template"] = "Hi {{ lead.first_name "
    if variants:
        msg["variants"] = variants
    found = problems(cfg)
    assert len(found) == 1, found
    line = line_of(text_of(cfg), "Hi {{ lead.first_name ")
    assert found[0].startswith(f"seq.yaml:{line}:"), found
    assert "template does not compile" in found[0]
    assert "unexpected end of template" in found[0], found


def test_an_unsigned_webhook_is_a_warning_naming_the_fix() -> None:
    cfg = base_config()
    cfg["channel"] = {"type": "webhook", "url": "http://127.0.0.1:9/hook"}
    found = [p for p in check_config(parse_config(text_of(cfg), "seq.yaml"))]
    assert [(p.level, p.where) for p in found] == [("warning", "channel.secret_env")]
    assert "secret_env" in found[0].what
    cfg["channel"]["secret_env"] = "HOOK_SECRET"
    assert check_config(parse_config(text_of(cfg), "seq.yaml")) == []


# ------------------------------------------------ per-account overrides (issue 9, point 6)


def test_account_settings__may_override_the_channels_caps() -> None:
    from tests.helpers import base_config

    cfg = base_config()
    cfg["channel"]["messages_per_day"] = 500
    cfg["accounts"][0]["settings"] = {
        "messages_per_hour": 20,
        "messages_per_day": 100,
        "max_per_lead_per_day": 1,
    }
    cfg["accounts"].append({"id": "acct_b", "user_id": "u_2"})
    loaded = parse_config(yaml.safe_dump(cfg))
    a, b = loaded.config.accounts
    assert loaded.config.rate_limits(a) == (20, 100)
    assert loaded.config.rate_limits(b) == (200, 500)
    assert loaded.config.settings_for(a).max_per_lead_per_day == 1
    assert not hasattr(loaded.config.settings_for(a), "messages_per_hour")


def test_account_settings__unknown_keys_and_store_wide_settings_are_errors() -> None:
    from tests.helpers import base_config

    for key, value in (("messages_per_hr", 5), ("lead_table", "x"), ("run_times", ["09:00"])):
        cfg = base_config()
        cfg["accounts"][0]["settings"] = {key: value}
        with pytest.raises(ConfigError, match=rf"accounts\[0\]\.settings\.{key}: unknown key"):
            parse_config(yaml.safe_dump(cfg))


def test_account_settings__a_score_range_broken_by_an_override_is_an_error() -> None:
    from tests.helpers import base_config

    cfg = base_config()
    cfg["accounts"][0]["settings"] = {"min_score": 7}
    loaded = parse_config(yaml.safe_dump(cfg))
    problems = [p for p in check_config(loaded) if p.level == "error"]
    assert any("min_score 7 is above max_score 6 for account acct_a" in p.what for p in problems)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("optout_keywords_extra", ["stop", "  "]),  # was checked globally, not per account
        ("optout_keywords", [""]),
        ("max_per_lead_per_day", 1001),
        ("no_response_hours", -1),
        ("breaker_failure_rate", 0),
        ("messages_per_hour", 0),
        ("timezone", "Mars/Olympus"),
    ],
)
def test_account_settings__an_override_is_held_to_the_global_settings_bounds(
    key: str, bad: Any
) -> None:
    """The override model is derived from Settings and the channel, so every bound and
    check of a global setting holds for the same key under an account."""
    from tests.helpers import base_config

    cfg = base_config()
    cfg["accounts"][0]["settings"] = {key: bad}
    with pytest.raises(ConfigError, match=rf"accounts\[0\]\.settings\.{key}"):
        parse_config(yaml.safe_dump(cfg))


def test_condition__a_time_column_takes_an_iso_time_quoted_or_not() -> None:
    """`value: 2026-03-01` (YAML reads it as a date) is the ISO text a time column compares
    with; a value that is no time is an error naming the column (before: the date was
    refused as 'not a number or a text', and any text passed and never matched)."""
    cfg = base_config()
    cfg["sequences"][0]["trigger"] = [
        {"field": "last_inbound_at", "op": "between", "value": ["2026-03-01", "2026-03-31"]}
    ]
    text = text_of(cfg).replace("'2026-03-01'", "2026-03-01")
    assert "- 2026-03-01\n" in text
    cond = parse_config(text, "seq.yaml").config.sequences[0].trigger[0]
    assert cond.value == ["2026-03-01", "2026-03-31"]
    cfg["sequences"][0]["trigger"] = [{"field": "converted_at", "op": "gte", "value": "soon"}]
    with pytest.raises(ConfigError) as info:
        parse_config(text_of(cfg), "seq.yaml")
    assert "converted_at is a time" in str(info.value) and "seq.yaml:" in str(info.value)


def test_a_misspelt_required_key_is_one_error_naming_the_key_it_was_meant_to_be() -> None:
    """`delay_hour: 20` was two errors ("delay_hours: required key is missing" and
    "delay_hour: unknown key"): two lines where cron mails one, for one typo."""
    cfg = base_config()
    step = cfg["sequences"][0]["messages"][1]
    step["delay_hour"] = step.pop("delay_hours")
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(cfg, sort_keys=False), "seq.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert (
        "sequences[0].messages[1].delay_hour: unknown key; did you mean `delay_hours`?"
        in (lines[0])
    )
    # a key that is missing without a look-alike is still said as missing
    del cfg["sequences"][0]["messages"][1]["delay_hour"]
    cfg["sequences"][0]["messages"][1]["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_dump(cfg, sort_keys=False), "seq.yaml")
    text = str(info.value)
    assert "delay_hours: required key is missing" in text and "colour: unknown key" in text


def test_two_accounts_with_one_instagram_account_is_an_error_naming_both() -> None:
    """A copied account block whose ig_user_id was not changed passed `sequences check`:
    the second account's leads were sent from the first's Instagram account, with caps,
    opt-outs and the rate limit counted apart (a person could get both accounts' steps)."""
    cfg = base_config(channel={"type": "instagram", "api_base": "https://graph.instagram.com"})
    cfg["accounts"].append({**cfg["accounts"][0], "id": "acct_b", "token_env": "TOKEN_B"})
    loaded = parse_config(yaml.safe_dump(cfg, sort_keys=False), "seq.yaml")
    errors = [p for p in check_config(loaded) if p.level == "error"]
    assert len(errors) == 1, errors
    assert errors[0].where == "accounts[1].ig_user_id" and "acct_a" in errors[0].what
    cfg["accounts"][1]["ig_user_id"] = "17841000000000002"
    loaded = parse_config(yaml.safe_dump(cfg, sort_keys=False), "seq.yaml")
    assert [p for p in check_config(loaded) if p.level == "error"] == []
