"""The entry point: every command family registered on one Typer app, and ``main``,
which turns errors into one line and an exit code. Each command parses, calls one library
function, prints. Exit codes live here only:
0 done, 2 bad usage or configuration (nothing sent), 3 finished but some sends failed,
75 another run holds the lock, 1 anything unexpected."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import typer

from . import errors
from .cli_common import app, err
from .cli_examples import add_examples
from .errors import FollowupError
from .redact import redact, register_environment

# Each command family lives in its own module and registers its commands on ``app`` when
# imported; the import order is the order of `followup --help`.
# isort: off
from . import cli_run, cli_operate, cli_explain, cli_people, cli_outcomes, cli_setup
from . import cli_report, cli_audit, cli_keys, cli_leads, cli_plan, cli_db
# isort: on

__all__ = ["app", "main"]
FAMILIES = (
    cli_run, cli_operate, cli_explain, cli_people, cli_outcomes, cli_setup, cli_report,
    cli_audit, cli_keys, cli_leads, cli_plan, cli_db,
)  # fmt: skip
add_examples(app)

# ----------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    from . import operate

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FOLLOWUP_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    register_environment()  # FOLLOWUP_*TOKEN*/KEY*/SECRET* values never come out
    if not debug:
        _quiet_libraries()
    code, lines = _invoke(args, debug)
    # A run records itself, writes its metrics and pings the end whatever way it ended.
    code, repeated = operate.finish_current(code, "; ".join(lines) if lines else None)
    if not repeated:
        for line in lines:
            err.print(f"followup: {line}", markup=False)
    sys.stdout.flush()
    sys.exit(code)


def _invoke(args: list[str], debug: bool) -> tuple[int, list[str]]:
    """The command run: its exit code and, for an error, the line(s) that say it (one line
    and an exit code for every error; a traceback only with --debug)."""
    lines: list[str] = []
    usage_error, click_error, no_args = _click_errors()
    try:
        # Not standalone: a usage error comes out here (one line below, as cron mails it;
        # Click's own is a framed box of five); --help and typer.Exit return their code.
        rv = app(args=args, prog_name="followup", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except no_args as exc:  # plain `followup`: the help, as before
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
        code = exc.exit_code
    except usage_error as exc:
        lines = [_usage_line(exc)]
        code = exc.exit_code
    except click_error as exc:
        lines = [redact(exc.format_message()) or type(exc).__name__]
        code = exc.exit_code
    except typer.Abort:
        lines = ["aborted"]
        code = errors.EXIT_UNEXPECTED
    except BrokenPipeError:  # `followup report | head`: the reader left; nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = errors.EXIT_UNEXPECTED
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FollowupError as exc:
        if debug:
            sys.stderr.write(redact(traceback.format_exc()) or "")
        lines = (redact(str(exc)) or "").splitlines() or [type(exc).__name__]
        code = exc.exit_code
    except KeyboardInterrupt:
        lines = ["interrupted"]
        code = 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if debug:
            sys.stderr.write(redact(traceback.format_exc()) or "")
        lines = [
            f"unexpected error: {type(exc).__name__}: {redact(str(exc))} "
            "(run with --debug for details)"
        ]
        code = errors.EXIT_UNEXPECTED
    return code, lines


def _click_errors() -> tuple[type, type, type]:
    """Click's UsageError, ClickException and NoArgsIsHelpError as this typer raises them
    (its own vendored copy of click in recent versions, click itself in older ones)."""
    mro = typer.BadParameter.__mro__
    usage = next(c for c in mro if c.__name__ == "UsageError")
    click_error = next(c for c in mro if c.__name__ == "ClickException")
    no_args = getattr(sys.modules[usage.__module__], "NoArgsIsHelpError", None)
    return usage, click_error, no_args or _Never


class _Never(Exception):
    """Raised by nothing (a click without NoArgsIsHelpError prints the help and exits)."""


def _usage_line(exc: Any) -> str:
    """A usage error in one line: the command, what is wrong, where the help is."""
    path = exc.ctx.command_path if exc.ctx is not None else "followup"
    where = path.removeprefix("followup").strip()
    message = " ".join(exc.format_message().split())
    return f"{where + ': ' if where else ''}{message} (see `{path} --help`)"


def _quiet_libraries() -> None:
    """A library's own log warnings (psycopg's "error ignored terminating <Pipeline>" when
    the server drops the connection) never reach stderr through logging's last resort: an
    error is one line (the command's), as cron mails it; --debug shows them."""
    import logging

    for name in ("psycopg",):
        lib = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in lib.handlers):
            lib.addHandler(logging.NullHandler())


if __name__ == "__main__":  # pragma: no cover
    main()
