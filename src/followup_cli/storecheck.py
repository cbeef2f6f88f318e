"""`sequences check --db`: every template rendered against a bounded sample of the lead
store's leads, because custom attributes and text lengths are data, not configuration.

Per template (a message, or each of its variants) and per attribute it uses: how many of
the sequence's eligible leads lack it (none has it: an error, most likely a typo; some lack
it: a warning with the share, those leads are skipped with ``missing_attribute:<key>``),
how many render too long for the channel (``too_long``) or blank, and the longest rendering.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import LoadedConfig, Problem, _where
from .configcheck import declared_attributes
from .models import BadLead, Lead, parse_lead
from .render import Renderer, TemplateProblem, attribute_names, with_attribute
from .rules import trigger_holds

SAMPLE_ROWS = 2000  # leads read from the store: enough for shares, bounded for a big table
MAX_FILLS = 20  # attributes filled in per lead to find every one it lacks


@dataclass
class TemplateStats:
    """What one template does with the sampled leads."""

    sequence_id: str
    message_id: str
    variant_id: str | None
    line: int | None
    eligible: int = 0
    longest: int = 0  # UTF-8 bytes of the longest rendering that fits the sandbox
    longest_lead: str | None = None
    too_long: int = 0
    blank: int = 0
    missing: Counter = field(default_factory=Counter)  # attribute -> leads lacking it
    failed: Counter = field(default_factory=Counter)  # other template errors -> leads
    example: dict[str, str] = field(default_factory=dict)  # problem -> a lead id

    @property
    def name(self) -> str:
        v = f"/{self.variant_id}" if self.variant_id else ""
        return f"{self.sequence_id}/{self.message_id}{v}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "template": self.name,
            "line": self.line,
            "eligible": self.eligible,
            "longest_bytes": self.longest,
            "longest_lead": self.longest_lead,
            "too_long": self.too_long,
            "blank": self.blank,
            "missing_attributes": dict(self.missing),
            "failed": dict(self.failed),
        }


def _eligible(loaded: LoadedConfig, lead: Lead) -> bool:
    cfg = loaded.config
    account = cfg.account(lead.account_id)
    if account is None or not account.enabled:
        return False
    st = cfg.settings_for(account)
    if lead.score is None or not st.min_score <= lead.score <= st.max_score:
        return False
    return lead.converted_at is None and (lead.status or "").lower() != "converted"


def check_against_leads(
    loaded: LoadedConfig, rows: list[dict[str, Any]]
) -> tuple[list[Problem], list[TemplateStats]]:
    """Problems (file:line) and per-template figures for the sampled lead rows."""
    cfg = loaded.config
    leads: list[Lead] = []
    for row in rows:
        try:
            leads.append(parse_lead(row))
        except BadLead:
            continue  # `run` names bad rows; here they are not a template's problem
    known = sorted({k for lead in leads for k in attribute_names(lead.attributes)})
    declared = declared_attributes(cfg)
    renderer = Renderer(cfg)
    problems: list[Problem] = []
    stats: list[TemplateStats] = []
    candidates = [lead for lead in leads if _eligible(loaded, lead)]
    for seq in cfg.sequences:
        eligible = [lead for lead in candidates if trigger_holds(seq, lead)]
        for msg in seq.messages:
            for vid in [v.id for v in msg.variants] if msg.variants else [None]:
                if renderer.compile_problem(seq.id, msg.id, vid) is not None:
                    continue  # reported by check_config
                loc = renderer.location(seq.id, msg.id, vid)
                s = TemplateStats(seq.id, msg.id, vid, loaded.line_of(*loc), len(eligible))
                for lead in eligible:
                    _render_one(renderer, cfg, seq, msg, vid, lead, s)
                stats.append(s)
                problems.extend(_problems(s, loc, loaded, known, declared, len(rows)))
    return problems, stats


def _render_one(
    renderer: Renderer, cfg: Any, seq: Any, msg: Any, vid: str | None, lead: Lead, s: TemplateStats
) -> None:
    context = lead.context()
    attrs = dict(context["attributes"])
    account = cfg.account(lead.account_id)
    for _ in range(MAX_FILLS):
        context["attributes"] = attrs
        try:
            r = renderer.render(seq, msg, vid, context, account)
        except TemplateProblem as tp:
            if tp.reason.startswith("missing_attribute:"):
                name = tp.reason.split(":", 1)[1]
                s.missing[name] += 1
                s.example.setdefault(f"missing:{name}", lead.id)
                attrs = with_attribute(attrs, name, "sample")  # and look for the next one it lacks
                continue
            if tp.reason == "too_long":
                s.too_long += 1
                s.example.setdefault("too_long", lead.id)
                if tp.size is not None and tp.size > s.longest:
                    s.longest, s.longest_lead = tp.size, lead.id
            else:
                s.failed[tp.what] += 1
                s.example.setdefault(tp.what, lead.id)
            return
        size = len((r.text or "").encode("utf-8"))
        if size > s.longest or s.longest_lead is None:
            s.longest, s.longest_lead = size, lead.id
        if not r.text and not r.media_url:
            s.blank += 1
            s.example.setdefault("blank", lead.id)
        return


def _share(n: int, of: int) -> str:
    return f"{n} of {of} eligible leads ({n / of:.0%})" if of else f"{n} leads"


def _problems(
    s: TemplateStats,
    loc: tuple,
    loaded: LoadedConfig,
    known: list[str],
    declared: set[str],
    sampled: int,
) -> list[Problem]:
    """What a template's trial renders over the sampled leads found: the attributes the
    leads lack, then the renders too long, blank or failing; each a Problem at ``loc``."""
    line, where = loaded.line_of(*loc), _where(loc)
    out = [
        Problem(line, where, *_attribute_problem(s, name, n, known, declared, sampled))
        for name, n in sorted(s.missing.items())
    ]
    out += [Problem(line, where, what, level) for what, level in _render_problems(s)]
    return out


def _attribute_problem(
    s: TemplateStats, name: str, n: int, known: list[str], declared: set[str], sampled: int
) -> tuple[str, Literal["error", "warning"]]:
    """(what, level) for leads without ``lead.attributes.<name>``: a likely typo when no
    lead has it and the config does not declare it; a warning otherwise."""
    skip = f"missing_attribute:{name}"
    if name not in known and name not in declared:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        have = ", ".join(known[:12]) or "none"
        return (
            f"no lead in the store has lead.attributes.{name} ({sampled} leads sampled): "
            f"most likely a typo; {hint}attributes the leads have: {have}",
            "error",
        )
    if name not in known:
        return (
            f"lead.attributes.{name} is declared, but no lead in the store has it yet "
            f"({sampled} leads sampled): every lead is skipped ({skip}) until the host "
            "app fills it",
            "warning",
        )
    return (
        f"{_share(n, s.eligible)} lack lead.attributes.{name} (e.g. lead "
        f"{s.example[f'missing:{name}']}): they are skipped ({skip}) while the others "
        f"are served; guard it with | default('…') to serve them too",
        "warning",
    )


def _render_problems(s: TemplateStats) -> list[tuple[str, Literal["error", "warning"]]]:
    """(what, level) for the renders over the channel's limit, blank or failing."""
    out: list[tuple[str, Literal["error", "warning"]]] = []
    if s.too_long:
        out.append(
            (
                f"{_share(s.too_long, s.eligible)} would render over the channel's limit (e.g. "
                f"lead {s.example['too_long']}): they are skipped (too_long); shorten the "
                "template",
                "error" if s.too_long == s.eligible else "warning",
            )
        )
    if s.blank:
        out.append(
            (
                f"{_share(s.blank, s.eligible)} render blank text and the message has no media "
                f"(e.g. lead {s.example['blank']}): they are skipped (empty_message)",
                "warning",
            )
        )
    for what, n in sorted(s.failed.items()):
        out.append(
            (
                f"{_share(n, s.eligible)} fail to render (e.g. lead {s.example[what]}): {what}",
                "warning",
            )
        )
    return out
