"""Numbered migrations, the same steps on both stores; applied names are recorded in
``followup_migrations``. Never edit a released step: add a new one.

Each step is a list of statements written once, with two placeholders the dialect fills:
``{ts}`` (a timestamp column: ISO text on SQLite, timestamptz on Postgres), ``{id}`` (an
auto-increment primary key), ``{bool}`` and ``{random_hex}`` (64 random hex digits from the
database's own generator). A ``(dialect, statement)`` pair runs on that store only (triggers
are spelled differently); the triggers are named blocks of ``queries.sql`` ("the next-due
triggers"), their column list quoted by ``queries.columns``.
"""

from __future__ import annotations

from .queries import columns, q

# Every followup_tracking column but id (never changes) and attempted_at (0009): an UPDATE
# of any of them changes what the tracking row means to the planner (0004, 0010).
_TRACKING_MEANING = (
    "lead_id", "sequence_id", "message_id", "step", "variant_id", "account_id", "user_id",
    "conversation_id", "recipient_id", "status", "reason", "followup_number", "scheduled_at",
    "claimed_at", "sent_at", "delivered_at", "read_at", "responded_at", "converted_at",
    "last_followup_at", "next_followup_at", "error_code", "error_subcode", "error_message",
    "external_id", "body", "body_encrypted", "run_id", "attempts", "updated_at", "person_key",
    "external_key",
)  # fmt: skip

MIGRATIONS: list[tuple[str, list[str | tuple[str, str]]]] = [
    (
        "0001_initial",
        [
            """CREATE TABLE IF NOT EXISTS followup_runs (
                run_id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                actor TEXT,
                started_at {ts} NOT NULL,
                heartbeat_at {ts} NOT NULL,
                finished_at {ts},
                business_now {ts},
                exit_code INTEGER,
                summary TEXT
            )""",
            """CREATE TABLE IF NOT EXISTS followup_enrollments (
                lead_id TEXT NOT NULL,
                sequence_id TEXT NOT NULL,
                account_id TEXT,
                anchor_at {ts} NOT NULL,
                started_at {ts} NOT NULL,
                ended_at {ts},
                ended_reason TEXT,
                holdout {bool} NOT NULL DEFAULT FALSE,
                PRIMARY KEY (lead_id, sequence_id)
            )""",
            """CREATE INDEX IF NOT EXISTS followup_enrollments_active
                ON followup_enrollments (account_id, lead_id) WHERE ended_at IS NULL""",
            """CREATE TABLE IF NOT EXISTS followup_tracking (
                id {id},
                lead_id TEXT NOT NULL,
                sequence_id TEXT NOT NULL,
                message_id TEXT NOT NULL,
                step INTEGER,
                variant_id TEXT,
                account_id TEXT,
                user_id TEXT,
                conversation_id TEXT,
                recipient_id TEXT,
                status TEXT NOT NULL,
                reason TEXT,
                followup_number INTEGER,
                scheduled_at {ts},
                claimed_at {ts} NOT NULL,
                sent_at {ts},
                delivered_at {ts},
                read_at {ts},
                responded_at {ts},
                converted_at {ts},
                last_followup_at {ts},
                next_followup_at {ts},
                error_code INTEGER,
                error_subcode INTEGER,
                error_message TEXT,
                external_id TEXT,
                body TEXT,
                body_encrypted {bool} NOT NULL DEFAULT FALSE,
                run_id TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                updated_at {ts},
                CONSTRAINT followup_tracking_once UNIQUE (lead_id, sequence_id, message_id)
            )""",
            """CREATE INDEX IF NOT EXISTS followup_tracking_account_time
                ON followup_tracking (account_id, claimed_at)""",
            """CREATE INDEX IF NOT EXISTS followup_tracking_open
                ON followup_tracking (status, run_id) WHERE status IN ('pending', 'unknown')""",
            """CREATE INDEX IF NOT EXISTS followup_tracking_sent
                ON followup_tracking (sent_at)""",
            """CREATE TABLE IF NOT EXISTS followup_optouts (
                lead_id TEXT PRIMARY KEY,
                reason TEXT,
                source TEXT NOT NULL,
                actor TEXT,
                created_at {ts} NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS followup_audit (
                id {id},
                at {ts} NOT NULL,
                actor TEXT,
                action TEXT NOT NULL,
                run_id TEXT,
                lead_id TEXT,
                account_id TEXT,
                sequence_id TEXT,
                message_id TEXT,
                detail TEXT
            )""",
            """CREATE INDEX IF NOT EXISTS followup_audit_lead ON followup_audit (lead_id)""",
            """CREATE TABLE IF NOT EXISTS followup_config_seen (
                digest TEXT PRIMARY KEY,
                path TEXT,
                actor TEXT,
                first_seen_at {ts} NOT NULL
            )""",
        ],
    ),
    (
        # Outcomes (issue 4): enrollment-level outcomes (holdout lift), ingested events
        # (unique key: re-ingesting changes nothing), the host app's "in follow-up" label.
        "0002_outcomes",
        [
            "ALTER TABLE followup_enrollments ADD COLUMN responded_at {ts}",
            "ALTER TABLE followup_enrollments ADD COLUMN converted_at {ts}",
            """CREATE TABLE IF NOT EXISTS followup_events (
                id {id},
                event_key TEXT NOT NULL,
                type TEXT NOT NULL,
                source TEXT NOT NULL,
                lead_id TEXT,
                account_id TEXT,
                message_id TEXT,
                at {ts} NOT NULL,
                outcome TEXT NOT NULL,
                detail TEXT,
                ingested_at {ts} NOT NULL,
                CONSTRAINT followup_events_once UNIQUE (event_key)
            )""",
            """CREATE INDEX IF NOT EXISTS followup_events_lead ON followup_events (lead_id, at)""",
            """CREATE INDEX IF NOT EXISTS followup_tracking_external
                ON followup_tracking (external_id)""",
            """CREATE INDEX IF NOT EXISTS followup_tracking_recipient
                ON followup_tracking (recipient_id)""",
            """CREATE VIEW followup_lead_labels AS
            SELECT e.lead_id, e.sequence_id, e.account_id, e.started_at,
                COALESCE((SELECT MAX(t.step) FROM followup_tracking t
                    WHERE t.lead_id = e.lead_id AND t.sequence_id = e.sequence_id
                      AND t.sent_at IS NOT NULL), 0) AS step,
                CASE
                    WHEN e.holdout THEN 'holdout'
                    WHEN EXISTS (SELECT 1 FROM followup_tracking t
                        WHERE t.lead_id = e.lead_id AND t.sequence_id = e.sequence_id
                          AND t.status = 'pending') THEN 'sending'
                    WHEN EXISTS (SELECT 1 FROM followup_tracking t
                        WHERE t.lead_id = e.lead_id AND t.sequence_id = e.sequence_id
                          AND t.status = 'unknown') THEN 'unknown'
                    WHEN EXISTS (SELECT 1 FROM followup_tracking t
                        WHERE t.lead_id = e.lead_id AND t.sequence_id = e.sequence_id
                          AND t.sent_at IS NOT NULL) THEN 'in_progress'
                    ELSE 'enrolled'
                END AS state,
                (SELECT t.next_followup_at FROM followup_tracking t
                    WHERE t.lead_id = e.lead_id AND t.sequence_id = e.sequence_id
                      AND t.status NOT IN ('failed', 'skipped')
                    ORDER BY t.id DESC LIMIT 1) AS next_followup_at
            FROM followup_enrollments e
            WHERE e.ended_at IS NULL""",
        ],
    ),
    (
        # What each lead's last_inbound_at / converted_at looked like at the last reconcile,
        # as the database prints them: a run reconciles only the leads that changed.
        "0003_outcome_marks",
        [
            """CREATE TABLE IF NOT EXISTS followup_outcome_marks (
                lead_id TEXT PRIMARY KEY,
                inbound_seen TEXT,
                converted_seen TEXT,
                checked_at {ts} NOT NULL
            )""",
        ],
    ),
    (
        # Issue 11: a run looks only at leads that may be due. For an active enrollment the
        # planner stores when its next step can be due at the earliest (``next_due_at``,
        # under the config digest it was computed with). Any change to the lead's tracking
        # rows (a claim, an outcome, a release, an operator's resolve, an erasure) bumps
        # ``state_version`` and clears the stored time, in the database itself, so no
        # writer can forget it; the planner stores a time only if the version it read is
        # still current.
        "0004_next_due",
        [
            "ALTER TABLE followup_enrollments ADD COLUMN next_due_at {ts}",
            "ALTER TABLE followup_enrollments ADD COLUMN next_due_config TEXT",
            "ALTER TABLE followup_enrollments ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0",
            ("sqlite", q("next_due_on_insert", "sqlite")),
            ("sqlite", q("next_due_on_update", "sqlite")),
            ("sqlite", q("next_due_on_delete", "sqlite")),
            ("sqlite", q("next_due_on_update_lead", "sqlite")),
            ("postgres", q("next_due_function", "postgres")),
            ("postgres", q("next_due_trigger", "postgres")),
        ],
    ),
    (
        # The schedule in one place (issue 10): the slot a run took (`run --on-schedule`),
        # claimed once in followup_slots whatever the number of ticks, hosts or processes.
        "0005_run_slots",
        [
            "ALTER TABLE followup_runs ADD COLUMN slot TEXT",
            """CREATE TABLE IF NOT EXISTS followup_slots (
                slot TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                claimed_at {ts} NOT NULL
            )""",
            """CREATE INDEX IF NOT EXISTS followup_runs_started ON followup_runs (started_at)""",
        ],
    ),
    (
        # The person, not the row (issue 9): a lead row's person is (account, recipient) as a
        # keyed hash (HMAC-SHA256; the key from FOLLOWUP_SUPPRESSION_KEY, else the random
        # secret below). Opt-outs and erasures of a person, and the person key on tracking rows
        # and enrollments so that caps count per person whatever lead row carries them.
        "0006_person_suppressions",
        [
            """CREATE TABLE IF NOT EXISTS followup_meta (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            """INSERT INTO followup_meta (name, value) VALUES ('person_key_secret', {random_hex})
                ON CONFLICT (name) DO NOTHING""",
            """CREATE TABLE IF NOT EXISTS followup_suppressions (
                person_key TEXT PRIMARY KEY,
                key_id TEXT NOT NULL,
                account_id TEXT NOT NULL,
                recipient_id TEXT,
                lead_id TEXT,
                kind TEXT NOT NULL,
                reason TEXT,
                source TEXT NOT NULL,
                actor TEXT,
                created_at {ts} NOT NULL
            )""",
            "ALTER TABLE followup_tracking ADD COLUMN person_key TEXT",
            """CREATE INDEX IF NOT EXISTS followup_tracking_person
                ON followup_tracking (person_key)""",
            "ALTER TABLE followup_enrollments ADD COLUMN person_key TEXT",
            """CREATE INDEX IF NOT EXISTS followup_enrollments_person
                ON followup_enrollments (person_key)""",
        ],
    ),
    (
        # An audit you can believe (issue 9, auditchain.py): each audit row is chained to the
        # one before by a SHA-256 hash; the detail is covered through a salted digest so an
        # erasure can remove it and the chain still verifies; the head (the last place and
        # hash) is kept apart, so deleting the newest rows shows. The rows already there are
        # chained in id order by the migration itself (``auditchain.backfill``).
        "0007_audit_chain",
        [
            "ALTER TABLE followup_audit ADD COLUMN chain_seq BIGINT",
            "ALTER TABLE followup_audit ADD COLUMN prev_hash TEXT",
            "ALTER TABLE followup_audit ADD COLUMN row_hash TEXT",
            "ALTER TABLE followup_audit ADD COLUMN detail_salt TEXT",
            "ALTER TABLE followup_audit ADD COLUMN detail_digest TEXT",
            "ALTER TABLE followup_audit ADD COLUMN db_role TEXT",
            """CREATE UNIQUE INDEX IF NOT EXISTS followup_audit_chain
                ON followup_audit (chain_seq)""",
            """CREATE TABLE IF NOT EXISTS followup_audit_head (
                id INTEGER PRIMARY KEY,
                chain_seq BIGINT NOT NULL,
                row_hash TEXT NOT NULL
            )""",
            """INSERT INTO followup_audit_head (id, chain_seq, row_hash)
                VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')
                ON CONFLICT (id) DO NOTHING""",
        ],
    ),
    (
        # Message ids sealed (issue 9, point 5): with FOLLOWUP_ENCRYPTION_KEY set, the
        # platform's id of a sent message is sealed in `external_id`, and a keyed hash of it
        # (suppress.lookup_token) in `external_key` finds the row when a webhook names it.
        # Rows written before keep their clear id (looked up as such) until `keys rotate`.
        "0008_message_id_keys",
        [
            "ALTER TABLE followup_tracking ADD COLUMN external_key TEXT",
            """CREATE INDEX IF NOT EXISTS followup_tracking_external_key
                ON followup_tracking (external_key)""",
        ],
    ),
    (
        # Batched claims (issue 11 part 2): a run claims several leads in one transaction,
        # then marks each claim `attempted_at` (in a conditional UPDATE that re-checks the
        # opt-outs) right before handing it to the API. A `pending` row with attempted_at
        # NULL was surely never sent: a dead run's such claims are released, not `unknown`.
        # Only the engine's claim writes NULL; every other writer (a version before this
        # one, a script, the rows already there) gets the default, an instant long past
        # that means "may have been sent": treated as attempted, the conservative reading.
        "0009_claim_attempts",
        [
            "ALTER TABLE followup_tracking ADD COLUMN attempted_at {ts} "
            "DEFAULT '1970-01-01T00:00:00.000000Z'",
        ],
    ),
    (
        # The attempt mark (an UPDATE of attempted_at alone, once per message) changes
        # nothing the planner reads: the 0004 trigger no longer fires for it. It fires for
        # an UPDATE of any other column, as before. A column added to followup_tracking
        # later must be added to this list (test_due_only checks every column).
        "0010_tracking_trigger_columns",
        [
            ("sqlite", "DROP TRIGGER IF EXISTS followup_tracking_update"),
            ("sqlite", q("next_due_on_meaning", "sqlite", meaning=columns(_TRACKING_MEANING))),
            ("postgres", "DROP TRIGGER IF EXISTS followup_tracking_changed ON followup_tracking"),
            (
                "postgres",
                q("next_due_trigger_on_meaning", "postgres", meaning=columns(_TRACKING_MEANING)),
            ),
        ],
    ),
    (
        # A reconcile mark (0003) holds for the lead's recent rows as they were: any new,
        # moved or deleted follow-up or enrollment (a row inserted or deleted, its lead or
        # its time changed) forgets the lead's mark, in the database itself, so the next
        # reconcile looks at the lead again. A lead with no recent rows can then keep a mark
        # too, and the SQLite reconcile reads each lead with one probe of its mark instead
        # of two probes of its rows at every run (bench/RESULTS-select.md).
        "0011_outcome_marks_forget",
        [
            *(
                ("sqlite", q(f"mark_forget_{table}_{op}", "sqlite"))
                for table in ("tracking", "enrollments")
                for op in ("insert", "delete", "update")
            ),
            ("postgres", q("mark_forget_function", "postgres")),
            ("postgres", q("mark_forget_tracking", "postgres")),
            ("postgres", q("mark_forget_enrollments", "postgres")),
        ],
    ),
    (
        # The candidate query's one probe of a lead's enrollments (store/sqlite.py) reads
        # only these columns: on SQLite an index holding them answers it without reading the
        # enrollment rows (one account's pass at 1M leads: 0.265 -> 0.233 s CPU,
        # bench/RESULTS-select.md).
        "0012_enrollment_probe_index",
        [
            (
                "sqlite",
                """CREATE INDEX IF NOT EXISTS followup_enrollments_probe ON followup_enrollments
                (lead_id, ended_at, next_due_at, next_due_config, anchor_at)""",
            ),
        ],
    ),
    (
        # 0011's trigger on Postgres never waits for a mark another transaction holds (a
        # reconcile writing marks, now after its chunk's commit, outcomes.py): a claim
        # batch and a reconcile could otherwise each hold what the other waits for.
        "0013_outcome_marks_forget_skip_locked",
        [("postgres", q("mark_forget_function_skip_locked", "postgres"))],
    ),
    (
        # One audit chain per account the engine writes to, beside the main one (issue 11,
        # auditchain.py): every attempt appended its row under the one head's row lock, held
        # through its COMMIT's disk flush, so the accounts' commits could not share a flush.
        # A row's chain is ``chain`` ("" the main chain: every row written before keeps it
        # and verifies as before); a chain's place is unique within it; each chain has its
        # head row (the main one keeps id 1), and is opened by a row of the main chain that
        # its first row links to.
        "0014_audit_chains",
        [
            "ALTER TABLE followup_audit ADD COLUMN chain TEXT NOT NULL DEFAULT ''",
            "DROP INDEX IF EXISTS followup_audit_chain",
            """CREATE UNIQUE INDEX IF NOT EXISTS followup_audit_chains
                ON followup_audit (chain, chain_seq)""",
            "ALTER TABLE followup_audit_head ADD COLUMN chain TEXT NOT NULL DEFAULT ''",
            """CREATE UNIQUE INDEX IF NOT EXISTS followup_audit_head_chain
                ON followup_audit_head (chain)""",
        ],
    ),
]
