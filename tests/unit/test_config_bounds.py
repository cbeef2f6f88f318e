"""Config bounds: every number has a documented range, every URL is absolute and safe, and
the file itself (its size, its anchors and aliases) cannot make `sequences check` or a run
eat the machine. Each mistake is exit 2 with file:line, never exit 1 at 9:00."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from followup_cli.config import parse_config
from followup_cli.configcheck import check_config
from followup_cli.errors import ConfigError
from tests.helpers import base_config


def text_of(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def first_message(c: dict[str, Any]) -> dict[str, Any]:
    return c["sequences"][0]["messages"][0]


def trigger(c: dict[str, Any]) -> dict[str, Any]:
    return c["sequences"][0]["trigger"][0]


@pytest.mark.parametrize(
    ("mutate", "needle", "expect"),
    [
        (
            lambda c: first_message(c).update(delay_hours=float("inf")),
            "delay_hours: .inf",
            "finite number",
        ),
        (
            lambda c: first_message(c).update(delay_hours=float("nan")),
            "delay_hours: .nan",
            "finite number",
        ),
        (
            lambda c: first_message(c).update(delay_hours=100_000_000),
            "delay_hours: 100000000",
            "less than or equal to 8760",
        ),
        (
            lambda c: c["settings"].update(no_response_hours=10**9),
            "no_response_hours",
            "less than or equal to 8760",
        ),
        (lambda c: c["settings"].update(min_score=-(10**30)), "min_score", "greater than or equal"),
        (
            lambda c: c["channel"].update(messages_per_hour=0),
            "messages_per_hour",
            "greater than or equal to 1",
        ),
        (lambda c: c["channel"].update(window_hours=float("inf")), "window_hours", "finite number"),
        (lambda c: c["channel"].update(timeout_seconds=-1), "timeout_seconds", "greater than 0"),
        (lambda c: c["sequences"][0].update(priority=10**12), "priority", "less than or equal"),
        (
            lambda c: first_message(c).update(variants=[{"id": "a", "weight": -1}]),
            "weight: -1",
            "greater than or equal to 0",
        ),
        (
            lambda c: first_message(c).update(variants=[{"id": "a", "weight": float("inf")}]),
            "weight: .inf",
            "finite number",
        ),
        (
            lambda c: first_message(c).update(
                variants=[{"id": "a", "weight": 0}, {"id": "b", "weight": 0}]
            ),
            "variants:",
            "every variant has weight 0",
        ),
        (lambda c: trigger(c).update(value=[2, "six"]), "value:", "cannot compare it with 'six'"),
        (
            lambda c: trigger(c).update(field="status", value=[2, "six"]),
            "value:",
            "not both numbers or both texts",
        ),
        (lambda c: trigger(c).update(value=[6, 2]), "value:", "swap them"),
        (lambda c: trigger(c).update(value=["a", "z"]), "value:", "score is a number"),
        (
            lambda c: trigger(c).update(op="gt", value=[1, 2]),
            "value:",
            "compares with a number or a text",
        ),
        (lambda c: trigger(c).update(op="lte", value=float("inf")), "value: .inf", "finite number"),
        (
            lambda c: first_message(c).update(template="   "),
            "template: '   '",
            "non-blank `template:`",
        ),
        (
            lambda c: first_message(c).update(variants=[{"id": "a", "template": "\n\t"}]),
            "variants:",
            "non-blank `template:`",
        ),
        (
            lambda c: c["settings"].update(optout_keywords=["stop", "  "]),
            "optout_keywords",
            "blank opt-out keyword",
        ),
        (
            lambda c: c["channel"].update(type="instagram", api_base="graph.instagram.com"),
            "api_base",
            "not an absolute URL",
        ),
        (
            lambda c: c["channel"].update(type="instagram", api_base="ftp://graph.instagram.com"),
            "api_base",
            "not an absolute URL",
        ),
        (
            lambda c: c["channel"].update(type="instagram", api_base="http://graph.instagram.com"),
            "api_base",
            "clear text",
        ),
        (lambda c: c["channel"].update(type="instagram", api_version="21"), "api_version", "v21.0"),
        (
            lambda c: c["channel"].update(type="instagram", max_text_bytes=5000),
            "max_text_bytes",
            "at most 1000",
        ),
        (
            lambda c: c.update(channel={"type": "webhook", "url": "example.com/hook"}),
            "url:",
            "not an absolute URL",
        ),
        (
            lambda c: first_message(c).update(type="image", media_url="https:///x.jpg"),
            "media_url",
            "absolute http(s) URL",
        ),
    ],
)
def test_out_of_range_values_are_errors_naming_the_line(
    mutate: Any, needle: str, expect: str
) -> None:
    cfg = base_config()
    mutate(cfg)
    text = text_of(cfg)
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "seq.yaml")
    message = str(exc.value)
    assert f"seq.yaml:{line_of(text, needle)}:" in message, message
    assert expect in message, message


@pytest.mark.parametrize(
    "api_base",
    [
        "http://127.0.0.1:8080",
        "http://localhost:9/graph",
        "http://[::1]:80",
        "https://graph.instagram.com",
    ],
)
def test_http_is_allowed_only_on_loopback(api_base: str) -> None:
    cfg = base_config(channel={"type": "instagram", "api_base": api_base})
    assert parse_config(text_of(cfg), "seq.yaml").config.channel.api_base == api_base


def test_the_text_limit_defaults_by_channel() -> None:
    def limit(channel: dict[str, Any]) -> Any:
        return parse_config(
            text_of(base_config(channel=channel)), "s.yaml"
        ).config.channel.max_text_bytes

    assert limit({"type": "instagram"}) == 1000
    assert limit({"type": "instagram", "max_text_bytes": 500}) == 500
    assert limit({"type": "console"}) is None
    assert (
        limit({"type": "webhook", "url": "https://host.example/hook", "max_text_bytes": 1000})
        == 1000
    )


def test_between_with_texts_and_number_like_texts_is_allowed() -> None:
    cfg = base_config()
    cfg["sequences"][0]["trigger"].append({"field": "status", "op": "between", "value": ["a", "m"]})
    cfg["sequences"][0]["trigger"][0]["value"] = [
        "2",
        6,
    ]  # "2" compares as a number, as in the rules
    loaded = parse_config(text_of(cfg), "seq.yaml")
    assert [p for p in check_config(loaded) if p.level == "error"] == []


def test_a_template_that_renders_blank_for_the_sample_lead_is_an_error() -> None:
    cfg = base_config()
    first_message(cfg)["template"] = "{% if lead.score > 100 %}Hi{% endif %}"
    text = text_of(cfg)
    found = [p.format("seq.yaml") for p in check_config(parse_config(text, "seq.yaml"))]
    assert any("renders to blank text" in p for p in found), found
    assert any(p.startswith(f"seq.yaml:{line_of(text, 'lead.score > 100')}:") for p in found), found


BOMB = """version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_yaml_alias_bomb_is_an_error_at_once_not_after_minutes() -> None:
    # A guard against the blow-up (26 s and MemoryError before), not a benchmark: the
    # bound leaves room for a loaded CI machine.
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"seq.yaml:\d+: \w+: expands to more than 100000 values"):
        parse_config(BOMB, "seq.yaml")
    assert time.monotonic() - started < 10.0


def test_anchors_and_aliases_within_bounds_still_work() -> None:
    text = text_of(base_config()).replace("  quiet_hours:", "  quiet_hours: &q")
    text += "x_unused: *q\n"
    with pytest.raises(ConfigError, match="x_unused: unknown key"):
        parse_config(text, "seq.yaml")  # the alias resolved; the key itself is the mistake


def test_deep_nesting_and_huge_files_are_errors() -> None:
    with pytest.raises(ConfigError, match="nested"):
        parse_config("version: 1\nsettings: " + "[" * 3000 + "]" * 3000 + "\n", "seq.yaml")
    with pytest.raises(ConfigError, match="at most 1000000"):
        parse_config("# " + "x" * 1_000_001, "seq.yaml")


def test_a_type_error_from_a_placeholder_attribute_is_a_warning_not_a_refusal() -> None:
    # `sequences check` cannot know an undeclared attribute's type: "sample" + 1 fails, but
    # that is its guess, not the admin's mistake; the run must not be refused for it.
    cfg = base_config()
    first_message(cfg)["template"] = "Only {{ lead.attributes.price + 1 }} euros"
    found = check_config(parse_config(text_of(cfg), "seq.yaml"))
    assert [p.level for p in found] == ["warning", "warning"], found
    assert any("placeholder 'sample'" in p.what and "sample_lead" in p.what for p in found)
    cfg["sample_lead"] = {"attributes": {"price": 20}}
    assert check_config(parse_config(text_of(cfg), "seq.yaml")) == []
    cfg["sequences"][0]["messages"][0]["template"] = "Only {{ lead.first_name + 1 }} euros"
    assert [p.level for p in check_config(parse_config(text_of(cfg), "seq.yaml"))] == ["error"]
