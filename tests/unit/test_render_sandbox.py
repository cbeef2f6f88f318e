"""Templates cannot flood: whatever a template (or the lead data it prints) tries to build,
rendering stays small and fast, and a whole record is never printed to a lead."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from followup_cli.config import parse_config
from followup_cli.configcheck import check_config
from followup_cli.render import MAX_CHARS, Renderer, TemplateProblem, sample_lead
from tests.helpers import base_config


def renderer_for(template: str, **channel: Any) -> tuple[Renderer, Any]:
    cfg = base_config()
    if channel:
        cfg["channel"] = {"type": "console", **channel}
    cfg["sequences"][0]["messages"][0]["template"] = template
    loaded = parse_config(yaml.safe_dump(cfg, sort_keys=False), "seq.yaml")
    return Renderer(loaded.config), loaded.config


def render(template: str, lead_over: dict[str, Any] | None = None, **channel: Any) -> str | None:
    r, cfg = renderer_for(template, **channel)
    seq = cfg.sequences[0]
    lead = sample_lead(cfg, seq)
    lead.update(lead_over or {})
    return r.render(seq, seq.messages[0], None, lead, cfg.accounts[0]).text


def refused(
    template: str, lead_over: dict[str, Any] | None = None, **channel: Any
) -> TemplateProblem:
    started = time.monotonic()
    with pytest.raises(TemplateProblem) as exc:
        render(template, lead_over, **channel)
    assert time.monotonic() - started < 8.0, f"{template} took too long to refuse"
    return exc.value


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 10**9 }}",
        "{{ 10**9 * 'a' }}",
        "{{ 'a' * 10**7 }}",
        "{{ lead.first_name * 100000000 }}",
        "{{ [lead.first_name] * 10**9 }}",
        "{{ ['x' * 5000] * 3 }}",
        "{{ 'a'|center(10**9) }}",
        "{{ 'a'.ljust(10**9) }}",
        "{{ 'a'.zfill(10**9) }}",
        "{{ ('a' * 9000).replace('a', 'aaaa') }}",
        "{{ 'a'|indent(10**9) }}",
        "{{ '%0999999999d'|format(1) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:>{}}'.format(1, 10**9) }}",
        "{{ [1]|batch(10**9, 'x')|list }}",
        "{{ range(10**9)|list }}",
        "{{ 10 ** (10 ** 8) }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
        "{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ (['x' * 9000] * 1)|join('y' * 2000) }}",
        "{{ ('x' * 100)|wordwrap(1, wrapstring='y' * 500) }}",
    ],
)
def test_templates_cannot_build_huge_values(template: str) -> None:
    problem = refused(template)
    assert problem.reason in ("too_long", "template_error")


def test_lipsum_is_gone_and_range_is_bounded() -> None:
    assert render("{{ range(3)|join(',') }}") == "0,1,2"
    refused("{{ lipsum(10**6) }}")


@pytest.mark.parametrize(
    "template",
    [
        "{{ lead }}",
        "{{ account }}",
        "{{ '%s'|format(lead) }}",
        "{{ lead|string }}",
        "{{ 'x' ~ lead }}",
        "{{ lead|tojson }}",
        "{{ lead.attributes }}",
        "{{ lead|list }}",
        "{{ '{}'.format(account) }}",
        "{% for k in lead %}{{ k }}{% endfor %}",
        "{{ lead|dictsort }}",
    ],
)
def test_a_whole_record_is_never_printed(template: str) -> None:
    problem = refused(template)
    assert "Sam" not in problem.what and "1234567890" not in problem.what


def test_fields_still_work_every_way() -> None:
    assert (
        render("{{ lead.first_name }} {{ lead['username'] }} {{ lead.get('nope', 'x') }}")
        == "Sam sample.user x"
    )
    assert render("{{ account.id }}: {{ 'first_name' in lead }}") == "acct_a: True"
    assert (
        render("{{ '%s and %d'|format(lead.first_name, 3) }} {{ '{} {}'.format(1, 'b') }}")
        == "Sam and 3 1 b"
    )
    assert render("{% for c in lead.first_name %}{{ c }}.{% endfor %}") == "S.a.m."
    assert render("{{ lead.first_name * 3 }}") == "SamSamSam"
    assert render("{{ ['a', 'b']|join(', ') }} {{ 'x'|center(5) }}|") == "a, b   x  |"


def test_printed_lead_data_is_bounded_too() -> None:
    problem = refused("Hi {{ lead.first_name }}", {"first_name": "x" * (MAX_CHARS + 1)})
    assert problem.reason == "too_long"


def test_the_channel_limit_is_utf8_bytes() -> None:
    assert render("{{ 'é' * 500 }}", max_text_bytes=1000) == "é" * 500
    problem = refused("{{ 'é' * 501 }}", max_text_bytes=1000)
    assert problem.reason == "too_long" and "1002 UTF-8 bytes" in problem.what


def test_instagram_refuses_a_long_template_at_check_time() -> None:
    cfg = base_config(channel={"type": "instagram"})
    cfg["sequences"][0]["messages"][0]["template"] = "x" * 1001
    found = [p.format("s.yaml") for p in check_config(parse_config(yaml.safe_dump(cfg), "s.yaml"))]
    assert any("1001 UTF-8 bytes" in p and "at most 1000" in p for p in found), found


def test_a_template_that_calls_itself_is_refused_at_check_time() -> None:
    cfg = base_config()
    cfg["sequences"][0]["messages"][0]["template"] = (
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
    )
    found = [p.format("s.yaml") for p in check_config(parse_config(yaml.safe_dump(cfg), "s.yaml"))]
    assert found and all(p.startswith("s.yaml:") for p in found), found


def test_a_mistyped_field_is_named_with_the_likely_fix() -> None:
    problem = refused("Hi {{ lead.frist_name }}")
    assert problem.reason == "template_error"
    assert "lead has no field 'frist_name' (did you mean lead.first_name?)" in problem.what
    assert "account has no field 'nme'" in refused("{{ account.nme }}").what


def test_a_missing_attribute_is_falsy_and_named_when_printed() -> None:
    assert render("{{ lead.attributes.product or 'our product' }}") == "our product"
    assert render("{% if lead.attributes.product %}x{% else %}y{% endif %}") == "y"
    assert render("{{ lead.attributes.product | default('our product') }}") == "our product"
    assert render("{{ 'a' if lead.attributes.product is defined else 'b' }}") == "b"
    problem = refused("Still keen on {{ lead.attributes.product }}?")
    assert problem.reason == "missing_attribute:product"
    # nested: named by the whole path used, whichever part of it the lead lacks
    deep = "{{ lead.attributes.product.name }}"
    assert refused(deep).reason == "missing_attribute:product.name"
    assert refused(deep, {"attributes": {"product": {}}}).reason == "missing_attribute:product.name"
    assert render(deep, {"attributes": {"product": {"name": "mat"}}}) == "mat"
    # a null value is lacked too: never printed as "" (a DM saying "Still keen on ?")
    null = {"attributes": {"product": None}}
    assert refused("Still keen on {{ lead.attributes.product }}?", null).reason == (
        "missing_attribute:product"
    )
    assert render("{{ lead.attributes.product or 'our product' }}", null) == "our product"
    assert refused(deep, {"attributes": {"product": {"name": None}}}).reason == (
        "missing_attribute:product.name"
    )
    assert (
        render("{{ lead.attributes.product.name or 'x' }}", {"attributes": {"product": {}}}) == "x"
    )


# ------------------------------------------------------------- property: no template floods

ATOMS = st.sampled_from(
    [
        "'ab'",
        "lead.first_name",
        "7",
        "10**6",
        "range(50)",
        "[1, 'x']",
        "lead",
        "account",
        "lead.attributes.interest",
        "lead.attributes.nope",
        "now",
        "'%09999d'",
        "'{:>99}'",
        "''",
    ]
)


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["*", "+", "~", "%", "**"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(
            inner,
            st.sampled_from(
                [
                    "|center(5000)",
                    "|join('-' * 500)",
                    "|list",
                    "|string",
                    "|format(lead)",
                    "|indent(900)",
                    "|replace('a', 'aaaa')",
                    "|batch(3)|list",
                    "|tojson",
                    "|default('d')",
                    "|sum(start=[])",
                    ".ljust(9000)",
                    ".replace('', 'xx')",
                    "|wordwrap(1)",
                ]
            ),
        ).map(lambda t: f"({t[0]}{t[1]})"),
        inner.map(lambda e: f"[{e}, {e}, {e}]"),
    )


EXPRESSIONS = st.recursive(ATOMS, _grow, max_leaves=8)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(expr=EXPRESSIONS, loop=st.booleans())
def test_no_template_builds_more_than_the_bound_or_runs_long(expr: str, loop: bool) -> None:
    template = (
        f"{{% for i in range(100) %}}{{{{ {expr} }}}}{{% endfor %}}"
        if loop
        else f"{{{{ {expr} }}}}"
    )
    started = time.monotonic()
    try:
        text = render(template)
    except TemplateProblem as problem:
        assert problem.reason in ("template_error", "too_long") or problem.reason.startswith(
            "missing_attribute:"
        )
        assert "Sam" not in problem.what.replace("{{ lead.first_name }}", "")
    else:
        assert text is not None and len(text) <= MAX_CHARS
        assert "1234567890" not in text  # the sample lead's recipient id: no record printed
    assert time.monotonic() - started < 8.0, template


def test_an_attribute_named_like_a_dict_method_is_the_leads_value() -> None:
    """A host app's custom fields `items`, `values`, `count`, `keys`, `get`, ...:
    `{{ lead.attributes.items }}` was the dict's method, so every lead holding `items` was
    skipped ("builtin_function_or_method object has no element 0") or got "<built-in method
    ...>" in its DM. The lead's value wins; a lead without it is still missing it; and the
    idiom `lead.attributes.get('x', 'y')` still works for a lead that has no `get` field."""
    data = {
        "attributes": {
            "items": ["shoe", "hat"],
            "values": "quality",
            "count": 3,
            "keys": 2,
            "address": {"items": "a box"},
        }
    }
    assert render("{{ lead.attributes.items[0] }}, {{ lead.attributes.items | length }}", data) == (
        "shoe, 2"
    )
    assert render("{{ lead.attributes.values }} x{{ lead.attributes.count }}", data) == (
        "quality x3"
    )
    assert render("{{ lead.attributes.keys + 1 }} {{ lead.attributes.address.items }}", data) == (
        "3 a box"
    )
    assert render("{{ lead.attributes.get('colour', 'any colour') }}", data) == "any colour"
    null = {"attributes": {"items": None}}
    assert refused("{{ lead.attributes.items }}", null).reason == "missing_attribute:items"
