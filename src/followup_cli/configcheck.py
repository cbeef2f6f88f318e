"""Checking a loaded sequences.yaml beyond its schema: ids, zones, templates (rendered
against a sample lead), the messaging window, webhooks. ``sequences check`` prints these;
``run`` refuses a file with errors. Imports both the config and the renderer, which do not
import each other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .config import _ID, Config, LoadedConfig, Problem, _dedupe, _where
from .render import Renderer, TemplateProblem, sample_lead, with_attribute


def declared_attributes(config: Config) -> set[str]:
    """Custom attributes the file declares: named by a trigger, `attributes:`, `sample_lead:`."""
    return set(sample_lead(config)["attributes"])


Line = Callable[..., int | None]  # ``LoadedConfig.line_of``: the line of a key's location


def check_config(loaded: LoadedConfig, check_attributes: bool = True) -> list[Problem]:
    """Semantic checks beyond the schema: ids, zones, templates, window fit. Errors and warnings.

    ``check_attributes=False`` leaves out the warnings about undeclared custom attributes
    (`sequences check --db` replaces them with figures from the lead store)."""
    cfg, line = loaded.config, loaded.line_of
    return _dedupe(
        [
            *_id_problems(cfg, line),
            *_score_problems(cfg, line),
            *_account_problems(cfg, line),
            *_template_problems(cfg, line, check_attributes),
            *window_warnings(loaded),
            *_setting_warnings(cfg, line),
        ]
    )


def _unique_ids(items: list[tuple[str, tuple]], what: str, line: Line) -> list[Problem]:
    """Ids named twice, and ids with characters an id may not have."""
    problems: list[Problem] = []
    seen: dict[str, tuple] = {}
    for ident, loc in items:
        if ident in seen:
            problems.append(
                Problem(
                    line(*loc), _where(loc), f"duplicate {what} id {ident!r} (ids must be unique)"
                )
            )
        seen[ident] = loc
        if not _ID.match(ident):
            problems.append(
                Problem(
                    line(*loc), _where(loc), f"{what} id {ident!r}: use letters, digits, _ . : -"
                )
            )
    return problems


def _id_problems(cfg: Config, line: Line) -> list[Problem]:
    """Account and sequence ids, then each sequence's message and variant ids and delays."""
    problems = _unique_ids(
        [(a.id, ("accounts", i, "id")) for i, a in enumerate(cfg.accounts)], "account", line
    )
    problems += _unique_ids(
        [(s.id, ("sequences", i, "id")) for i, s in enumerate(cfg.sequences)], "sequence", line
    )
    for si, seq in enumerate(cfg.sequences):
        problems += _unique_ids(
            [(m.id, ("sequences", si, "messages", mi, "id")) for mi, m in enumerate(seq.messages)],
            "message",
            line,
        )
        for mi, msg in enumerate(seq.messages):
            if msg.variants:
                problems += _unique_ids(
                    [
                        (v.id, ("sequences", si, "messages", mi, "variants", vi, "id"))
                        for vi, v in enumerate(msg.variants)
                    ],
                    "variant",
                    line,
                )
        problems += _delay_problems(si, [m.delay_hours for m in seq.messages], line)
    return problems


def _delay_problems(si: int, delays: list[float], line: Line) -> list[Problem]:
    """A sequence's delays count from the start of the silence: they must not decrease."""
    problems: list[Problem] = []
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
    return problems


def _score_problems(cfg: Config, line: Line) -> list[Problem]:
    """An account whose merged settings make its score range empty."""
    problems: list[Problem] = []
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
    return problems


def _account_problems(cfg: Config, line: Line) -> list[Problem]:
    """What the instagram channel needs of every account; a file with no account."""
    problems: list[Problem] = []
    if cfg.channel.type == "instagram":
        owner: dict[str, str] = {}
        for i, acct in enumerate(cfg.accounts):
            ig = acct.ig_user_id
            if ig and ig in owner:  # a copied account block: its leads sent from another's
                loc = ("accounts", i, "ig_user_id")
                problems.append(
                    Problem(
                        line(*loc),
                        _where(loc),
                        f"Instagram account {ig} is already {owner[ig]}'s: each account "
                        "sends as its own Instagram account (its caps, opt-outs and rate "
                        "limit are per account); give this one its own ig_user_id",
                    )
                )
            owner.setdefault(ig or "", acct.id)
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
    return problems


def _template_problems(cfg: Config, line: Line, check_attributes: bool) -> list[Problem]:
    """Templates: compile every one and render it against a sample lead."""
    renderer = Renderer(cfg)
    problems = [_template_problem(tp, line) for tp in renderer.problems]
    given = (cfg.sample_lead or {}).get("attributes")
    placeholders = [a for a in cfg.attributes if not isinstance(given, dict) or a not in given]
    for seq in cfg.sequences:
        for msg in seq.messages:
            for vid in [v.id for v in msg.variants] if msg.variants else [None]:
                if renderer.compile_problem(seq.id, msg.id, vid) is not None:
                    continue  # reported above, once, with Jinja's message
                sample = _SampleRender(renderer, cfg, seq, msg, vid, line)
                problems += sample.problems(placeholders, check_attributes)
    return problems


class _SampleRender:
    """One template (a message or one of its variants) rendered against the sample lead."""

    def __init__(
        self, renderer: Renderer, cfg: Config, seq: Any, msg: Any, vid: str | None, line: Line
    ) -> None:
        self.renderer, self.cfg, self.seq, self.msg, self.vid = renderer, cfg, seq, msg, vid
        self.line = line
        self.undeclared: list[str] = []  # attributes it uses that nothing declares

    def problems(self, placeholders: list[str], check_attributes: bool) -> list[Problem]:
        problems: list[Problem] = []
        try:
            r = self._render()
        except TemplateProblem as tp:
            problems.append(self._failed(tp, [*self.undeclared, *placeholders]))
            return problems
        finally:
            if self.undeclared and check_attributes:
                problems.append(self._undeclared_warning())
        if r is not None and not r.text and not r.media_url:
            problems.append(
                self._problem(
                    "renders to blank text for the sample lead and the message has no "
                    "media: it would be skipped (empty_message) at every run"
                )
            )
        return problems

    def _render(self) -> Any:
        """The rendered message; an attribute nothing declares is given the value "sample"
        (and named) and the render tried again, up to 20 times (then None)."""
        lead = sample_lead(self.cfg, self.seq)
        account = self.cfg.accounts[0] if self.cfg.accounts else None
        for _ in range(20):
            try:
                return self.renderer.render(self.seq, self.msg, self.vid, lead, account=account)
            except TemplateProblem as tp:
                if not tp.reason.startswith("missing_attribute:"):
                    raise
                # Data, not configuration: a warning, and look for the next one.
                self.undeclared.append(tp.reason.split(":", 1)[1])
                lead["attributes"] = with_attribute(
                    lead["attributes"], self.undeclared[-1], "sample"
                )
        return None

    def _failed(self, tp: TemplateProblem, guessed: list[str]) -> Problem:
        problem = _template_problem(tp, self.line)
        if guessed and tp.reason == "template_error":
            # The sample value "sample" is a guess at a type the data may not
            # have (e.g. a number): name the guess instead of refusing the file.
            problem.level = "warning"
            problem.what += (
                f" (with the placeholder 'sample' for lead.attributes."
                f"{', lead.attributes.'.join(guessed)}; give typed examples in "
                "`sample_lead: {attributes: {...}}`, or check with --db)"
            )
        return problem

    def _undeclared_warning(self) -> Problem:
        names = ", ".join(self.undeclared)
        return self._problem(
            f"uses lead.attributes.{', lead.attributes.'.join(self.undeclared)}"
            ", which no trigger, `attributes:` or `sample_lead:` declares: a "
            "lead without one is skipped (missing_attribute) while the others "
            f"are served. Declare it (`attributes: [{names}]`), guard it "
            "with | default('…'), or check it against the leads with --db",
            "warning",
        )

    def _problem(self, what: str, level: Literal["error", "warning"] = "error") -> Problem:
        loc = self.renderer.location(self.seq.id, self.msg.id, self.vid)
        return Problem(self.line(*loc), _where(loc), what, level)


def _setting_warnings(cfg: Config, line: Line) -> list[Problem]:
    """Settings that work but should change: an old key name, an unsigned webhook."""
    problems: list[Problem] = []
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
    if not cfg.settings.run_times:
        loc = ("settings", "run_times")
        problems.append(
            Problem(
                line(*loc),
                "settings.run_times",
                "empty: `followup run --on-schedule` (the crontab.example and systemd line) "
                "has no slot to run and fails; list the times, or have cron call "
                "`followup run` at them",
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
    return problems


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
