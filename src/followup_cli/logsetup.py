"""Logging: Python's ``logging`` under the ``followup`` logger, readable or JSON lines.

Every record carries time (UTC, ISO 8601), level, run id and account (``-`` when a line is
about the whole run). Where records go:

* ``--log-file PATH``: the full record (INFO and up; DEBUG with ``-vv``), appended; the file
  is reopened when logrotate moves it (``WatchedFileHandler``);
* stderr: only with ``-v`` (INFO; ``-vv`` DEBUG), or with ``--log-format json`` and no log
  file (systemd: journald keeps stderr). Otherwise stderr carries only the few human lines
  cron mails (see ``operate.RunOps.say``), and ``-q`` keeps even those to errors.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from logging.handlers import WatchedFileHandler
from typing import Any, TextIO

from .files import open_private

LOGGER = "followup"
_HANDLER_MARK = "_followup_handler"

_context: dict[str, str] = {"run_id": "-"}


def set_run_id(run_id: str) -> None:
    _context["run_id"] = run_id


class _Context(logging.Filter):
    """Fills ``run_id`` and ``account`` on records that do not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "run_id", None):
            record.run_id = _context["run_id"]
        if not getattr(record, "account", None):
            record.account = "-"
        return True


_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


class _Redact(logging.Filter):
    """The safety net: every record a handler writes passes the redaction step
    (``redact.py``): its message with its arguments, its traceback, and any extra field."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .redact import redact, redact_obj

        if isinstance(record.msg, dict):  # a structured message (JSON logs): keep its shape
            record.msg = redact_obj(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is logging's to report
                return True
            record.msg, record.args = redact(message), ()
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(text)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class _PrivateFileHandler(WatchedFileHandler):
    """``WatchedFileHandler`` whose file, when it creates it (the first run, or after
    logrotate moved the old one away), is ``0600``."""

    def _open(self) -> Any:
        return open_private(self.baseFilename, "a", self.encoding, self.errors)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line = (
            f"{when} {record.levelname} run={record.run_id} "  # type: ignore[attr-defined]
            f"account={record.account} {record.getMessage()}"  # type: ignore[attr-defined]
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    class _Json(JsonFormatter):
        def add_fields(
            self, log_record: dict[str, Any], record: logging.LogRecord, message: dict[str, Any]
        ) -> None:
            super().add_fields(log_record, record, message)
            log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            )
            log_record["level"] = record.levelname
            log_record["run_id"] = record.run_id  # type: ignore[attr-defined]
            log_record["account"] = record.account  # type: ignore[attr-defined]
            log_record["logger"] = record.name

    return _Json(
        "%(message)s",
        reserved_attrs=[
            *RESERVED_ATTRS,
            "run_id",
            "account",
        ],
        json_ensure_ascii=False,
    )


def configure(
    verbose: int = 0,
    quiet: bool = False,
    fmt: str = "text",
    log_file: str | None = None,
    stream: TextIO | None = None,
) -> bool:
    """Install the handlers (replacing ours from an earlier call). Returns True when stderr
    is a log destination (then human lines need not be printed twice)."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_MARK, False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    formatter = _json_formatter() if fmt == "json" else _TextFormatter()
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    if log_file:
        _install(logger, _file_handler(log_file), level, formatter)
    to_stderr = verbose > 0 or (fmt == "json" and not log_file)
    if to_stderr:
        sh = logging.StreamHandler(stream or sys.stderr)
        _install(logger, sh, logging.ERROR if quiet else level, formatter)
    # The logger's own level is the lowest its handlers take, so that a record nobody
    # would write is never built (a live run logs a line per message: with only the null
    # handler that cost ~5 % of a send's CPU).
    if not logger.handlers:
        logger.addHandler(_null())
        logger.setLevel(logging.CRITICAL + 1)
    else:
        logger.setLevel(max(logging.DEBUG, min(h.level for h in logger.handlers)))
    return to_stderr


def _file_handler(log_file: str) -> logging.Handler:
    """``--log-file``'s handler; a ConfigError naming the file when it cannot be opened."""
    try:
        return _PrivateFileHandler(log_file, encoding="utf-8")
    except OSError as exc:
        from .errors import ConfigError

        raise ConfigError(
            f"--log-file {log_file}: cannot open it ({exc.strerror}); create its folder "
            "or give a writable path"
        ) from None


def _install(
    logger: logging.Logger, handler: logging.Handler, level: int, formatter: logging.Formatter
) -> None:
    """``handler`` added to ``logger`` at ``level``: the run's context on each record,
    secrets redacted, marked as ours (``configure`` replaces it on its next call)."""
    handler.setLevel(level)
    handler.setFormatter(formatter)
    handler.addFilter(_Context())
    handler.addFilter(_Redact())
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)


def _null() -> logging.Handler:
    h = logging.NullHandler()
    setattr(h, _HANDLER_MARK, True)
    return h


def reset() -> None:
    """Remove our handlers (tests run many commands in one process)."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_MARK, False):
            logger.removeHandler(h)
            h.close()
    logger.setLevel(logging.DEBUG)  # as ``configure`` left it before it set the level
    _context["run_id"] = "-"


def get(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)


__all__ = ["configure", "reset", "get", "set_run_id", "LOGGER"]
