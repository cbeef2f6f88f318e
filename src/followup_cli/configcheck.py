"""Checking a loaded sequences.yaml beyond its schema: ids, zones, templates (rendered
against a sample lead), the messaging window, webhooks. ``sequences check`` prints these;
``run`` refuses a file with errors. Imports both the config and the renderer, which do not
import each other."""

from __future__ import annotations

from typing import Any

from .config import _ID, Config, LoadedConfig, Problem, _dedupe, _where
from .render import Renderer, TemplateProblem, sample_lead, with_attribute


def declared_attributes(config: Config) -> set[str]:
    """Custom attributes the file declares: named by a trigger, `attributes:`, `sample_lead:`."""
    return set(sample_lead(config)["attributes"])


def check_config(loaded: LoadedConfig, check_attributes: bool = True) -> list[Problem]:
    """Semantic checks beyond the schema: ids, zones, templates, window fit. Errors and warnings.

    ``check_attributes=False`` leaves out the warnings about undeclared custom attributes
    (`sequences check --db` replaces them with figures from the lead store)."""
    cfg = loaded.config
    problems: list[Problem] = []
    line = loaded.line_of

    def dup_check(items: list[tuple[str, tuple]], what: str) -> None:
        seen: dict[str, tuple] = {}
        for ident, loc in items:
            if ident in seen:
                problems.append(
                    Problem(
                        line(*loc),
                        _where(loc),
                        f"duplicate {what} id {ident!r} (ids must be unique)",
                    )
                )
            seen[ident] = loc
            if not _ID.match(ident):
                problems.append(
                    Problem(
                        line(*loc),
                        _where(loc),
                        f"{what} id {ident!r}: use letters, digits, _ . : -",
                    )
                )

    dup_check([(a.id, ("accounts", i, "id")) for i, a in enumerate(cfg.accounts)], "account")
    dup_check([(s.id, ("sequences", i, "id")) for i, s in enumerate(cfg.sequences)], "sequence")
    for si, seq in enumerate(cfg.sequences):
        dup_check(
            [(m.id, ("sequences", si, "messages", mi, "id")) for mi, m in enumerate(seq.messages)],
            "message",
        )
        for mi, msg in enumerate(seq.messages):
            if msg.variants:
                dup_check(
                    [
                        (v.id, ("sequences", si, "messages", mi, "variants", vi, "id"))
                        for vi, v in enumerate(msg.variants)
                    ],
                    "variant",
                )
        delays = [m.delay_hours for m in seq.messages]
        for mi in range(1, len(delays)):
            if delays[mi] < delays[mi - 1]:
                loc = ("sequences", si, "messages", mi, "delay_hours")
                problems.append(
                    Problem(
                        line(*loc),
                        _where(loc),
                        f"delay_hours {delays[mi]:g} is before the previous step's "
                        f"{delays[mi - 1]:g}; delays count from the start of the silence, "
                        "so they must not decrease",
                    )
                )

    for i, acct in enumerate(cfg.accounts):
        st = cfg.settings_for(acct)
        if st.min_score > st.max_score:
            loc = ("accounts", i, "settings")
            problems.append(
                Problem(
                    line(*loc),
                    _where(loc),
                    f"min_score {st.min_score} is above max_score {st.max_score} for account "
                    f"{acct.id} (its overrides merged with the global settings)",
                )
            )

    if cfg.channel.type == "instagram":
        for i, acct in enumerate(cfg.accounts):
            for key in ("ig_user_id", "token_env"):
                if not getattr(acct, key):
                    loc = ("accounts", i)
                    problems.append(
                        Problem(
                            line(*loc),
                            _where(loc + (key,)),
                            f"the instagram channel needs `{key}:`",
                        )
                    )
    if not cfg.accounts:
        problems.append(
            Problem(line("accounts") or 1, "accounts", "no accounts: nothing will be sent")
        )

    # Templates: compile every one and render it against a sample lead.
    renderer = Renderer(cfg)
    for tp in renderer.problems:
        problems.append(_template_problem(tp, line))
    given = (cfg.sample_lead or {}).get("attributes")
    placeholders = [a for a in cfg.attributes if not isinstance(given, dict) or a not in given]
    for seq in cfg.sequences:
        for msg in seq.messages:
            for vid in [v.id for v in msg.variants] if msg.variants else [None]:
                if renderer.compile_problem(seq.id, msg.id, vid) is not None:
                    continue  # reported above, once, with Jinja's message
                lead = sample_lead(cfg, seq)
                account = cfg.accounts[0] if cfg.accounts else None
                undeclared: list[str] = []
                try:
                    for _ in range(20):
                        try:
                            r = renderer.render(seq, msg, vid, lead, account=account)
                            break
                        except TemplateProblem as tp:
                            if not tp.reason.startswith("missing_attribute:"):
                                raise
                            # Data, not configuration: a warning, and look for the next one.
                            undeclared.append(tp.reason.split(":", 1)[1])
                            lead["attributes"] = with_attribute(
                                lead["attributes"], undeclared[-1], "sample"
                            )
                    else:
                        continue
                except TemplateProblem as tp:
                    problem = _template_problem(tp, line)
                    guessed = [*undeclared, *placeholders]
                    if guessed and tp.reason == "template_error":
                        # The sample value "sample" is a guess at a type the data may not
                        # have (e.g. a number): name the guess instead of refusing the file.
                        problem.level = "warning"
                        problem.what += (
                            f" (with the placeholder 'sample' for lead.attributes."
                            f"{', lead.attributes.'.join(guessed)}; give typed examples in "
                            "`sample_lead: {attributes: {...}}`, or check with --db)"
                        )
                    problems.append(problem)
                    continue
                finally:
                    if undeclared and check_attributes:
                        loc = renderer.location(seq.id, msg.id, vid)
                        names = ", ".join(undeclared)
                        problems.append(
                            Problem(
                                line(*loc),
                                _where(loc),
                                f"uses lead.attributes.{', lead.attributes.'.join(undeclared)}"
                                ", which no trigger, `attributes:` or `sample_lead:` declares: a "
                                "lead without one is skipped (missing_attribute) while the others "
                                f"are served. Declare it (`attributes: [{names}]`), guard it "
                                "with | default('…'), or check it against the leads with --db",
                                "warning",
                            )
                        )
                if not r.text and not r.media_url:
                    loc = renderer.location(seq.id, msg.id, vid)
                    problems.append(
                        Problem(
                            line(*loc),
                            _where(loc),
                            "renders to blank text for the sample lead and the message has no "
                            "media: it would be skipped (empty_message) at every run",
                        )
                    )

    problems.extend(window_warnings(loaded))
    if cfg.settings.account_workers is not None:
        loc = ("settings", "account_workers")
        problems.append(
            Problem(
                line(*loc),
                "settings.account_workers",
                "the old name of settings.max_in_flight (requests in flight across all "
                "accounts); rename it"
                + (
                    " (max_in_flight is given too and wins)"
                    if cfg.settings.max_in_flight != cfg.settings.account_workers
                    else ""
                ),
                "warning",
            )
        )
    if cfg.channel.type == "webhook" and not cfg.channel.secret_env:
        loc = ("channel", "type")
        problems.append(
            Problem(
                line(*loc),
                "channel.secret_env",
                "the webhook's POSTs go out unsigned: the host app cannot tell them from a "
                "forgery. Add `secret_env: NAME` (an environment variable holding the secret; "
                "the body's HMAC-SHA256 goes in X-Followup-Signature)",
                "warning",
            )
        )
    return _dedupe(problems)


def _template_problem(tp: Any, line: Any) -> Problem:
    loc = tp.loc
    return Problem(line(*loc), _where(loc), tp.what)


def window_warnings(loaded: LoadedConfig) -> list[Problem]:
    """Warn when a sequence's timing can never fit inside the channel's messaging window."""
    cfg = loaded.config
    window = cfg.channel.window_hours
    out: list[Problem] = []
    if window is None:
        return out
    # The global value once, then only accounts that set their own (no repeats).
    settings_list = [(("settings", "no_response_hours"), cfg.settings)] + [
        (("accounts", i, "settings", "no_response_hours"), cfg.settings_for(a))
        for i, a in enumerate(cfg.accounts)
        if a.settings.no_response_hours is not None
    ]
    for loc, st in settings_list:
        if st.no_response_hours >= window:
            out.append(
                Problem(
                    loaded.line_of(*loc),
                    _where(loc),
                    f"{st.no_response_hours:g}h of silence before a follow-up is not less than the "
                    f"channel's {window:g}h messaging window: no lead can ever be messaged. "
                    f"Use no_response_hours below {window:g} (e.g. {max(window / 6, 1):g})",
                    "warning",
                )
            )
    for si, seq in enumerate(cfg.sequences):
        for mi, msg in enumerate(seq.messages):
            if msg.active and msg.delay_hours >= window:
                loc = ("sequences", si, "messages", mi, "delay_hours")
                out.append(
                    Problem(
                        loaded.line_of(*loc),
                        _where(loc),
                        f"due {msg.delay_hours:g}h after the silence starts, but the channel's "
                        f"messaging window closes {window:g}h after the lead's last message, which "
                        "is never later than the silence start: this step can never be sent. "
                        f"Use delay_hours below {window:g} (leave room for the cron gap, e.g. "
                        f"{max(window - 6, 1):g}), or hand it to a human agent",
                        "warning",
                    )
                )
    return out
