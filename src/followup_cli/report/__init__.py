"""``followup report`` and ``followup leads``: KPIs as plain data.

``build_report(store, config, now, ...)`` returns a dict that follows
``docs/report-schema.json`` (the host app's analytics page reads it as JSON);
``csv_rows`` flattens it to one row per metric and segment; ``tables`` lays it out for
a terminal. Definitions (docs/report.md has the long form):

* The period is whole days in ``settings.timezone``: ``--date D`` or the ``--days N``
  ending today (default 7). "Today" is the day of ``now``.
* Cohort: the follow-ups **sent** in the period. A response or conversion counts for the
  follow-up it was attributed to (the last one sent before it, see ``outcomes.py``),
  whenever it happened up to ``now``. Lead-level rates count a lead once:
  response rate = leads with a responded follow-up / leads messaged.
* Progression: enrollments (not holdout) that **started** in the period, how many
  reached step k, responded to step k, converted after step k.
* Holdout lift: enrollments whose silence **started** in the period; messaged = not
  holdout; holdout = the control group, counted only when it stayed silent until the
  sequence's first step would have been due (messaged enrollments only start then).
* Problems: follow-ups claimed in the period that did not go out (unknown, pending,
  failed by error code, skipped by reason).

The package, one module a part: ``common`` (the period and shared helpers), ``kpis``
(``build_report``), ``experiments`` (A/B tests, holdout lift), ``leads``
(``leads_in_sequences``), ``export`` (CSV rows) and ``tables`` (the terminal). Import
from here: ``from followup_cli.report import build_report``.
"""

from __future__ import annotations

from .common import DEFAULT_DAYS, MAX_DAYS, Period, period_for
from .experiments import ALPHA, ab_verdict
from .export import CsvRow, csv_rows, to_csv
from .kpis import SCHEMA_VERSION, TARGET_LABELS, TARGETS, WEEKDAYS, build_report
from .leads import leads_in_sequences
from .tables import tables

__all__ = [
    "ALPHA",
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "SCHEMA_VERSION",
    "TARGETS",
    "TARGET_LABELS",
    "WEEKDAYS",
    "CsvRow",
    "Period",
    "ab_verdict",
    "build_report",
    "csv_rows",
    "leads_in_sequences",
    "period_for",
    "tables",
    "to_csv",
]
