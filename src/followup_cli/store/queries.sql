-- The store's SQL, by name (store/queries.py loads it once; SqlStore.q("name") fetches one).
--
-- A block starts at "-- name: <query>"; "-- name: <query>@sqlite" / "@postgres" is that
-- dialect's version. Values are bound parameters (:name), always. "{part}" is filled only
-- with SQL the tool wrote: an identifier quoted by queries.ident() (the lead table, a column
-- the tool chose), another block, or a fragment of the dialect seam (SqlStore._in_list).
-- "l" is the host's lead table; "{leads}" its quoted name.

-- ===================================================================== runs (runs.py)

-- name: slot_claim
INSERT INTO followup_slots (slot, run_id, claimed_at) VALUES (:s, :r, :at)
ON CONFLICT (slot) DO NOTHING

-- name: slot_release
DELETE FROM followup_slots WHERE slot = :s AND run_id = :r

-- name: slot_taken_by
SELECT run_id FROM followup_slots WHERE slot = :s

-- name: run_summary
SELECT summary FROM followup_runs WHERE run_id = :r

-- name: run_record_finish
UPDATE followup_runs SET finished_at = COALESCE(finished_at, :w), exit_code = :c, summary = :s
WHERE run_id = :r

-- name: run_record_insert
INSERT INTO followup_runs (run_id, host, pid, actor, started_at, heartbeat_at, finished_at,
  business_now, exit_code, summary)
VALUES (:r, :h, :p, :a, :st, :w, :w, :n, :c, :s)

-- name: run_set_slot
UPDATE followup_runs SET slot = :slot WHERE run_id = :r

-- name: runs_newest
SELECT run_id, host, pid, actor, started_at, heartbeat_at, finished_at, business_now,
  exit_code, summary, {slot} AS slot
FROM followup_runs ORDER BY started_at DESC, run_id DESC LIMIT :n

-- name: run_last_success
SELECT run_id, started_at, finished_at, business_now, exit_code, summary, {slot} AS slot
FROM followup_runs WHERE exit_code = 0 ORDER BY finished_at DESC, run_id DESC LIMIT 1

-- ============================================================ the person (persons.py)

-- name: person_key_secret
SELECT value FROM followup_meta WHERE name = 'person_key_secret'

-- name: suppression_other_key
SELECT key_id FROM followup_suppressions WHERE key_id <> :k LIMIT 1

-- name: person_of_lead_from_tracking
SELECT account_id, recipient_id FROM followup_tracking
WHERE lead_id = :l AND recipient_id IS NOT NULL ORDER BY id DESC LIMIT 1

-- name: person_key_from_tracking
SELECT person_key, account_id FROM followup_tracking
WHERE lead_id = :l AND person_key IS NOT NULL ORDER BY id DESC LIMIT 1

-- name: person_key_from_enrollments
SELECT person_key, account_id FROM followup_enrollments
WHERE lead_id = :l AND person_key IS NOT NULL ORDER BY started_at DESC LIMIT 1

-- An opt-out never overwrites what is recorded (an erasure stays an erasure).
-- name: suppression_add_optout
INSERT INTO followup_suppressions (person_key, key_id, account_id, recipient_id, lead_id, kind,
  reason, source, actor, created_at)
VALUES (:k, :kid, :a, :r, :l, :kind, :why, :s, :who, :now)
ON CONFLICT (person_key) DO NOTHING

-- An erasure replaces an opt-out, keeping nothing but the key (:kind is the erasure).
-- name: suppression_add_erasure
INSERT INTO followup_suppressions (person_key, key_id, account_id, recipient_id, lead_id, kind,
  reason, source, actor, created_at)
VALUES (:k, :kid, :a, :r, :l, :kind, :why, :s, :who, :now)
ON CONFLICT (person_key) DO UPDATE SET kind = excluded.kind, recipient_id = NULL,
  lead_id = NULL, reason = NULL, source = excluded.source, actor = excluded.actor,
  created_at = excluded.created_at, key_id = excluded.key_id
WHERE followup_suppressions.kind <> :kind

-- name: suppression_remove
DELETE FROM followup_suppressions WHERE person_key = :k AND kind = :kind

-- name: suppression_of_person
SELECT * FROM followup_suppressions WHERE person_key = :k

-- name: suppressions_all
SELECT * FROM followup_suppressions ORDER BY created_at, person_key

-- name: optout_by_source
SELECT 1 AS x FROM followup_optouts WHERE lead_id = :l AND source = :s

-- name: optout_add
INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at)
VALUES (:l, :r, :s, :a, :now) ON CONFLICT (lead_id) DO NOTHING

-- name: optout_remove_unless
DELETE FROM followup_optouts WHERE lead_id = :l AND source <> :e

-- name: optouts_all
SELECT * FROM followup_optouts ORDER BY created_at, lead_id

-- name: optout_of_lead
SELECT 1 AS x FROM followup_optouts WHERE lead_id = :l

-- One round trip: asked before every API attempt.
-- name: optout_of_lead_or_person
SELECT 1 AS x FROM followup_optouts WHERE lead_id = :l
UNION ALL SELECT 1 AS x FROM followup_suppressions WHERE person_key = :k

-- ================================================================ erasure (erasure.py)
-- "{ids}" is "lead_id IN (...)" for one chunk of lead ids (SqlStore._in_list).

-- name: erase_leads_of_person_tracking
SELECT DISTINCT lead_id FROM followup_tracking WHERE person_key = :k

-- name: erase_leads_of_person_enrollments
SELECT DISTINCT lead_id FROM followup_enrollments WHERE person_key = :k

-- name: erase_leads_of_recipient_tracking
SELECT DISTINCT lead_id FROM followup_tracking WHERE account_id = :a AND recipient_id = :r

-- name: erase_leads_of_recipient
SELECT l.id FROM {leads} l WHERE l.account_id = :a AND l.recipient_id = :r

-- name: erase_scrub_tracking
UPDATE followup_tracking SET body = NULL, body_encrypted = :f, recipient_id = NULL,
  conversation_id = NULL, error_message = NULL, external_id = NULL, external_key = NULL,
  person_key = NULL, updated_at = :now
WHERE {ids}

-- Any tracking row of the person under a lead id the host no longer has.
-- name: erase_scrub_tracking_of_person
UPDATE followup_tracking SET body = NULL, body_encrypted = :f, recipient_id = NULL,
  conversation_id = NULL, error_message = NULL, external_id = NULL, external_key = NULL,
  person_key = NULL, updated_at = :now
WHERE person_key = :k

-- name: erase_events_of_leads
SELECT id, event_key FROM followup_events WHERE {ids}

-- name: erase_scrub_event
UPDATE followup_events SET event_key = :k, detail = NULL, message_id = NULL WHERE id = :i

-- name: erase_enrollments_person
UPDATE followup_enrollments SET person_key = NULL WHERE {ids}

-- name: erase_outcome_marks
DELETE FROM followup_outcome_marks WHERE {ids}

-- name: erase_optouts
DELETE FROM followup_optouts WHERE {ids}

-- name: erase_optout_add
INSERT INTO followup_optouts (lead_id, reason, source, actor, created_at)
VALUES (:l, :r, :s, :a, :now)

-- name: optout_remove_source
DELETE FROM followup_optouts WHERE lead_id = :l AND source = :s

-- name: erase_runs_noting
SELECT run_id, summary FROM followup_runs WHERE summary LIKE :n ESCAPE '\'

-- name: run_set_summary
UPDATE followup_runs SET summary = :s WHERE run_id = :r

-- ========================================================= audit chain (auditchain.py)

-- The chains: "" (the main one; its head keeps id 1) and one per account the engine writes
-- to ("account:<id>", opened by a row of the main chain). ":chain" names the chain.

-- The row lock serialises a chain's writers until the transaction commits.
-- name: audit_head@postgres
SELECT chain_seq, row_hash, session_user::text AS s_role, current_user::text AS c_role
FROM followup_audit_head WHERE chain = :chain FOR UPDATE

-- name: audit_head@sqlite
SELECT chain_seq, row_hash, NULL AS s_role, NULL AS c_role FROM followup_audit_head
WHERE chain = :chain

-- name: audit_head_exists
SELECT 1 AS x FROM followup_audit_head WHERE chain = :chain

-- name: audit_last_chained
SELECT chain_seq, row_hash FROM followup_audit WHERE chain = :chain AND chain_seq IS NOT NULL
ORDER BY chain_seq DESC LIMIT 1

-- The main chain's head is id 1; another chain's takes the next id (its openers are
-- serialised by the main chain's head, ``auditchain._open``).
-- name: audit_head_insert
INSERT INTO followup_audit_head (id, chain, chain_seq, row_hash)
SELECT CASE WHEN CAST(:chain AS TEXT) = '' THEN 1 ELSE COALESCE(MAX(id), 1) + 1 END, :chain, :s, :h
FROM followup_audit_head WHERE true
ON CONFLICT DO NOTHING

-- The head of the main chain as the migration that made it knew it (0007: no chain column
-- yet; ``auditchain.backfill``).
-- name: audit_backfill_head
SELECT chain_seq, row_hash FROM followup_audit_head WHERE id = 1

-- name: audit_head_set
UPDATE followup_audit_head SET chain_seq = :s, row_hash = :h WHERE id = 1

-- name: audit_advance
UPDATE followup_audit_head SET chain_seq = :chain_seq, row_hash = :row_hash
WHERE chain = :chain AND chain_seq = :prev_seq AND row_hash = :prev_hash

-- name: audit_append@postgres
WITH head AS (
  UPDATE followup_audit_head SET chain_seq = :chain_seq, row_hash = :row_hash
  WHERE chain = :chain AND chain_seq = :prev_seq AND row_hash = :prev_hash RETURNING id)
INSERT INTO followup_audit (chain, chain_seq, at, actor, action, run_id, lead_id, account_id,
  sequence_id, message_id, detail, detail_salt, detail_digest, db_role, prev_hash, row_hash)
SELECT :chain, :chain_seq, :at, :actor, :action, :run_id, :lead_id, :account_id, :sequence_id,
  :message_id, :detail, :detail_salt, :detail_digest, :db_role, :prev_hash, :row_hash
FROM head

-- The row after the head this transaction read FOR UPDATE (``audit_head``, in a pipeline:
-- ``auditchain.append_later``). The head cannot have moved while locked; if it had, the
-- statement fails (1 / 0) rather than insert nothing: the transaction, sent on to its
-- COMMIT without waiting for this answer, then cannot commit without its audit row.
-- name: audit_append_locked@postgres
WITH head AS (
  UPDATE followup_audit_head SET chain_seq = :chain_seq, row_hash = :row_hash
  WHERE chain = :chain AND chain_seq = :prev_seq AND row_hash = :prev_hash RETURNING id)
INSERT INTO followup_audit (chain, chain_seq, at, actor, action, run_id, lead_id, account_id,
  sequence_id, message_id, detail, detail_salt, detail_digest, db_role, prev_hash, row_hash)
SELECT :chain, :chain_seq, :at, :actor, :action, :run_id, :lead_id, :account_id, :sequence_id,
  :message_id, :detail, :detail_salt, :detail_digest, :db_role, :prev_hash, :row_hash
FROM (SELECT count(*) AS n FROM head) moved WHERE 1 / moved.n = 1

-- The append when the head is not the one this process last left (another process wrote
-- since): the head read locked and moved, and the row inserted, in one statement, its hash
-- computed here from the Python-built canonical encoding around the two values the head
-- gives (``auditchain._payload_parts``): one wait for the head's lock instead of a failed
-- conditional update, a locked read, then the insert.
-- name: audit_append_at_head@postgres
WITH old AS (
  SELECT chain_seq, row_hash FROM followup_audit_head WHERE chain = :chain FOR UPDATE),
new AS (
  UPDATE followup_audit_head h SET chain_seq = old.chain_seq + 1,
    row_hash = encode(sha256(convert_to(
      :p1 || CAST(old.chain_seq + 1 AS text) || :p2 || old.row_hash || '"]', 'UTF8')), 'hex')
  FROM old WHERE h.chain = :chain
  RETURNING h.chain_seq, h.row_hash, old.row_hash AS prev_hash)
INSERT INTO followup_audit (chain, chain_seq, at, actor, action, run_id, lead_id, account_id,
  sequence_id, message_id, detail, detail_salt, detail_digest, db_role, prev_hash, row_hash)
SELECT :chain, new.chain_seq, :at, :actor, :action, :run_id, :lead_id, :account_id,
  :sequence_id, :message_id, :detail, :detail_salt, :detail_digest, :db_role, new.prev_hash,
  new.row_hash
FROM new
RETURNING chain_seq, row_hash

-- The same inside a pipeline, sent with the COMMIT unwaited: it fails (1 / 0) rather than
-- insert nothing when there is no head row, so the transaction cannot commit without it.
-- name: audit_append_at_head_or_fail@postgres
WITH old AS (
  SELECT chain_seq, row_hash FROM followup_audit_head WHERE chain = :chain FOR UPDATE),
new AS (
  UPDATE followup_audit_head h SET chain_seq = old.chain_seq + 1,
    row_hash = encode(sha256(convert_to(
      :p1 || CAST(old.chain_seq + 1 AS text) || :p2 || old.row_hash || '"]', 'UTF8')), 'hex')
  FROM old WHERE h.chain = :chain
  RETURNING h.chain_seq, h.row_hash, old.row_hash AS prev_hash)
INSERT INTO followup_audit (chain, chain_seq, at, actor, action, run_id, lead_id, account_id,
  sequence_id, message_id, detail, detail_salt, detail_digest, db_role, prev_hash, row_hash)
SELECT :chain, new.chain_seq, :at, :actor, :action, :run_id, :lead_id, :account_id,
  :sequence_id, :message_id, :detail, :detail_salt, :detail_digest, :db_role, new.prev_hash,
  new.row_hash
FROM (SELECT count(*) AS n FROM new) moved LEFT JOIN new ON true WHERE 1 / moved.n = 1

-- Every chain's head (``auditchain.verify``).
-- name: audit_head_read
SELECT chain, chain_seq, row_hash FROM followup_audit_head ORDER BY chain

-- name: audit_insert
INSERT INTO followup_audit (chain, chain_seq, at, actor, action, run_id, lead_id, account_id,
  sequence_id, message_id, detail, detail_salt, detail_digest, db_role, prev_hash, row_hash)
VALUES (:chain, :chain_seq, :at, :actor, :action, :run_id, :lead_id, :account_id, :sequence_id,
  :message_id, :detail, :detail_salt, :detail_digest, :db_role, :prev_hash, :row_hash)

-- (0007: no chain column yet)
-- name: audit_unchained_page
SELECT id, at, actor, action, run_id, lead_id, account_id, sequence_id, message_id, detail
FROM followup_audit WHERE chain_seq IS NULL AND id > :a ORDER BY id LIMIT :n

-- name: audit_chain_row
UPDATE followup_audit SET chain_seq = :chain_seq, detail_salt = :detail_salt,
  detail_digest = :detail_digest, prev_hash = :prev_hash, row_hash = :row_hash
WHERE id = :id

-- Erasure: "{ids}" selects the person's lead ids; "{kept}" the actions whose detail stays.
-- name: audit_scrubbed_places
SELECT chain, chain_seq FROM followup_audit
WHERE {ids} AND detail IS NOT NULL AND NOT ({kept})

-- name: audit_scrub
UPDATE followup_audit SET detail = NULL, detail_salt = NULL
WHERE {ids} AND detail IS NOT NULL AND NOT ({kept})

-- Every chain, the main one ("") first, each in its order.
-- name: audit_chain_page
SELECT * FROM followup_audit WHERE chain_seq > 0 AND (chain, chain_seq) > (:c, :a)
ORDER BY chain, chain_seq LIMIT :n

-- name: audit_unchained_ids
SELECT id FROM followup_audit WHERE chain_seq IS NULL OR chain_seq <= 0 ORDER BY id

-- ===================================================== keys, encryption (sealing.py)

-- name: key_records
SELECT name FROM followup_meta WHERE name LIKE :p

-- name: key_record_add
INSERT INTO followup_meta (name, value) VALUES (:n, :v) ON CONFLICT (name) DO NOTHING

-- name: key_record_remove
DELETE FROM followup_meta WHERE name = :n

-- "{sealed}": the sealed tracking columns (rows.SEALED_TRACKING).
-- name: key_sample_tracking
SELECT body, body_encrypted, reason, {sealed} FROM followup_tracking ORDER BY id DESC LIMIT :n

-- keys rotate reads each table in key order, a page at a time (keyset paging).
-- name: rotate_page_tracking
SELECT id, status, body_encrypted, body, {sealed}, reason, external_key FROM followup_tracking
WHERE id > :after ORDER BY id LIMIT :n

-- name: rotate_page_events
SELECT id, event_key, message_id FROM followup_events WHERE id > :after ORDER BY id LIMIT :n

-- name: rotate_page_suppressions
SELECT person_key, recipient_id FROM followup_suppressions
WHERE person_key > :after ORDER BY person_key LIMIT :n

-- name: event_key_taken
SELECT 1 AS x FROM followup_events WHERE event_key = :k

-- A row's changed columns ("{sets}"), only where its values are still the ones read
-- ("{unchanged}").
-- name: rotate_update
UPDATE {table} SET {sets} WHERE {key} = :_k AND {unchanged}

-- ============================================== what the role may do (access.py, Postgres)

-- The first schema of the search_path that exists, and what the role may do in it.
-- name: access_schema@postgres
SELECT current_user AS role, n.nspname AS schema,
  has_schema_privilege(n.oid, 'USAGE') AS usage,
  has_schema_privilege(n.oid, 'CREATE') AS may_create
FROM unnest(string_to_array(current_setting('search_path'), ',')) WITH ORDINALITY AS p(name, i)
JOIN pg_namespace n ON n.nspname = CASE WHEN trim(p.name) IN ('"$user"', '$user')
  THEN current_user::text ELSE trim(both '"' from trim(p.name)) END
ORDER BY p.i LIMIT 1

-- name: access_role@postgres
SELECT current_user AS role

-- name: access_tool_relations@postgres
SELECT c.relname AS name, c.relkind AS kind,
  pg_has_role(current_user, c.relowner, 'USAGE') AS owns,
  CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE')
    ELSE has_table_privilege(c.oid, 'SELECT') END AS sel,
  c.relkind <> 'S' AND has_table_privilege(c.oid, 'INSERT') AS ins,
  c.relkind <> 'S' AND has_table_privilege(c.oid, 'UPDATE') AS upd,
  c.relkind <> 'S' AND has_table_privilege(c.oid, 'DELETE') AS del
FROM pg_class c WHERE c.relnamespace = CAST(:s AS regnamespace) AND c.relname = ANY(:names)

-- name: access_lead_table@postgres
SELECT to_regclass(:t) IS NOT NULL AS found,
  CASE WHEN to_regclass(:t) IS NULL THEN true
    ELSE has_table_privilege(to_regclass(:t), 'SELECT') END AS sel

-- A read command cannot write, whatever the role may.
-- name: session_read_only@postgres
SET default_transaction_read_only = on

-- ================================= outcomes, events, report (outcome_queries.py)
-- "{where}": conditions the caller adds (queries.all_of: a time bound, a chunk of lead ids).

-- name: outcome_followups
SELECT id, lead_id, sequence_id, message_id, step, variant_id, account_id, status, sent_at,
  delivered_at, read_at, responded_at, converted_at, person_key
FROM followup_tracking WHERE sent_at IS NOT NULL AND {where}
ORDER BY sent_at, id

-- name: outcome_enrollments
SELECT * FROM followup_enrollments WHERE {where} ORDER BY anchor_at, lead_id

-- An outcome time ("{column}", one of the outcome columns) kept when new or earlier.
-- name: followup_outcome_set
UPDATE followup_tracking SET {column} = :at, updated_at = :now
WHERE id = :id AND ({column} IS NULL OR {column} > :at)

-- The same, and the status moves to :to from one of "{promote}" only (never backwards).
-- name: followup_outcome_set_promote
UPDATE followup_tracking SET {column} = :at, updated_at = :now,
  status = CASE WHEN {promote} THEN :to ELSE status END
WHERE id = :id AND ({column} IS NULL OR {column} > :at)

-- name: enrollment_outcome_set
UPDATE followup_enrollments SET {column} = :at
WHERE lead_id = :l AND sequence_id = :s AND ({column} IS NULL OR {column} > :at)

-- Every lead whose last_inbound_at / converted_at differ from what the last reconcile saw
-- (followup_outcome_marks), or that no reconcile has seen, as on SQLite below: a lead with
-- no recent rows is marked too (0011 forgets a mark when the lead's rows change), so each
-- run reads the lead table against the marks (one hash or merge join, no JIT: the
-- connection turns it off) instead of sorting the union of every recent follow-up and
-- enrollment (1M leads: 6.4 s, 0.8 s of it compiling, against 2.6 s with the unmarked
-- 300k, bench/RESULTS-select.md). In lead id order: the reconcile locks lead after lead in
-- that order (docs/never-twice.md). "IS DISTINCT FROM" takes a NULL that became '' as a
-- change (one more look, never one fewer). "{inbound_at}", "{converted_at}", "{status}":
-- the lead table's columns, NULL when it has none; "{lid}": its id as the tool's TEXT lead
-- ids compare.
-- name: changed_outcome_leads
SELECT {lid} AS lead_id, CAST({inbound_at} AS TEXT) AS inbound_seen,
  COALESCE(CAST({converted_at} AS TEXT),
    CASE WHEN lower({status}) = 'converted' THEN 'status:converted' END) AS converted_seen
FROM {leads} l
LEFT JOIN followup_outcome_marks m ON m.lead_id = {lid}
WHERE l.id IS NOT NULL AND (m.lead_id IS NULL
  OR m.inbound_seen IS DISTINCT FROM CAST({inbound_at} AS TEXT)
  OR m.converted_seen IS DISTINCT FROM COALESCE(CAST({converted_at} AS TEXT),
    CASE WHEN lower({status}) = 'converted' THEN 'status:converted' END))
ORDER BY 1

-- Every lead whose times differ from its mark, or that has none, in table order: one probe
-- of the marks per lead. A lead with no recent rows is marked too (0011 forgets a mark when
-- the lead's rows change), so it is not probed for rows at every run; "IS NOT" takes a
-- NULL that became '' as a change (one more look, never one fewer); a row without an id
-- is no lead (nothing tracks it, and it could never be marked). Sorting by id or
-- probing the recent rows per lead cost 0.79 s at a million leads, this 0.34 s
-- (bench/RESULTS-select.md).
-- name: changed_outcome_leads@sqlite
SELECT l.id AS lead_id, CAST({inbound_at} AS TEXT) AS inbound_seen,
  COALESCE(CAST({converted_at} AS TEXT),
    CASE WHEN {status} LIKE 'converted' THEN 'status:converted' END) AS converted_seen
FROM {leads} l
LEFT JOIN followup_outcome_marks m ON m.lead_id = {lid}
WHERE l.id IS NOT NULL AND (m.lead_id IS NULL
  OR m.inbound_seen IS NOT CAST({inbound_at} AS TEXT)
  OR m.converted_seen IS NOT COALESCE(CAST({converted_at} AS TEXT),
    CASE WHEN {status} LIKE 'converted' THEN 'status:converted' END))

-- "{values}": (:l0, :i0, :c0, :now), ... for one chunk of marks.
-- name: outcome_marks_save
INSERT INTO followup_outcome_marks (lead_id, inbound_seen, converted_seen, checked_at)
VALUES {values}
ON CONFLICT (lead_id) DO UPDATE SET inbound_seen = excluded.inbound_seen,
  converted_seen = excluded.converted_seen, checked_at = excluded.checked_at

-- Three arrays instead of a thousand parameters (psycopg parses those anew each time).
-- name: outcome_marks_save@postgres
INSERT INTO followup_outcome_marks (lead_id, inbound_seen, converted_seen, checked_at)
SELECT m.l, m.i, m.c, :now
FROM unnest(CAST(:ids AS text[]), CAST(:inb AS text[]), CAST(:conv AS text[])) AS m(l, i, c)
ON CONFLICT (lead_id) DO UPDATE SET inbound_seen = excluded.inbound_seen,
  converted_seen = excluded.converted_seen, checked_at = excluded.checked_at

-- name: outcome_mark_forget
DELETE FROM followup_outcome_marks WHERE lead_id = :l

-- name: event_insert
INSERT INTO followup_events (event_key, type, source, lead_id, account_id, message_id, at,
  outcome, detail, ingested_at)
VALUES (:event_key, :type, :source, :lead_id, :account_id, :message_id, :at, :outcome,
  :detail, :ingested_at)
ON CONFLICT (event_key) DO NOTHING RETURNING id

-- "{keys}": the event key's forms (event_key IN ...).
-- name: event_seen
SELECT 1 AS x FROM followup_events WHERE {keys}

-- name: event_outcome_set
UPDATE followup_events SET outcome = :o WHERE id = :i

-- name: events_all
SELECT * FROM followup_events ORDER BY id

-- name: events_of_lead
SELECT * FROM followup_events WHERE lead_id = :l ORDER BY id

-- name: followup_by_external_key
SELECT id, lead_id, sequence_id, account_id, status, sent_at FROM followup_tracking
WHERE external_key = :h ORDER BY id DESC LIMIT 1

-- "{ids}": the message id as stored in clear (external_id IN ...).
-- name: followup_by_external_id
SELECT id, lead_id, sequence_id, account_id, status, sent_at FROM followup_tracking
WHERE {ids} ORDER BY id DESC LIMIT 1

-- name: tracked_accounts
SELECT DISTINCT account_id FROM followup_tracking WHERE person_key IS NOT NULL

-- "{keys}": person keys (person_key IN ...).
-- name: lead_of_person_keys
SELECT lead_id FROM followup_tracking WHERE {keys} ORDER BY id DESC LIMIT 1

-- "{account}": account_id = :a, or nothing.
-- name: lead_of_recipient_tracked
SELECT lead_id FROM followup_tracking WHERE recipient_id = :r AND {account}
ORDER BY id DESC LIMIT 1

-- name: lead_of_recipient
SELECT l.id FROM {leads} l WHERE l.recipient_id = :r AND {account} ORDER BY l.id LIMIT 1

-- Tracking rows sent, or else claimed, in [start, end); "{cols}": the tracking columns but
-- bodies, person and sealed ones.
-- name: report_followups
SELECT id, {cols}, delivered_at, read_at, responded_at, converted_at FROM followup_tracking
WHERE ((sent_at >= :start AND sent_at < :end)
  OR (sent_at IS NULL AND claimed_at >= :start AND claimed_at < :end)) AND {account}
ORDER BY id

-- name: report_enrollments
SELECT * FROM followup_enrollments
WHERE ((started_at >= :start AND started_at < :end) OR (anchor_at >= :start AND anchor_at < :end))
  AND {account}
ORDER BY lead_id, sequence_id

-- name: suppressed_in_account
SELECT person_key FROM followup_suppressions WHERE account_id = :a

-- Leads of an account with a score in range, not converted, not opted out; and how many
-- of them ever received a follow-up. "{converted_at}", "{status}": NULL when the lead table
-- has no such column.
-- name: qualified_leads
SELECT COUNT(*) AS qualified, COALESCE(SUM(
    CASE WHEN EXISTS (SELECT 1 FROM followup_tracking t WHERE t.lead_id = {lid}
      AND t.sent_at IS NOT NULL) THEN 1 ELSE 0 END), 0) AS followed_up
FROM {leads} l
WHERE l.account_id = :a AND l.score BETWEEN :lo AND :hi AND {converted_at} IS NULL
  AND ({status} IS NULL OR lower({status}) <> 'converted')
  AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid})

-- The same, a page of leads at a time ("{after}": l.id > :after, or nothing).
-- name: qualified_leads_page
SELECT l.id AS id, l.recipient_id AS recipient_id,
  CASE WHEN EXISTS (SELECT 1 FROM followup_tracking t WHERE t.lead_id = {lid}
    AND t.sent_at IS NOT NULL) THEN 1 ELSE 0 END AS followed
FROM {leads} l
WHERE l.account_id = :a AND l.score BETWEEN :lo AND :hi AND {converted_at} IS NULL
  AND ({status} IS NULL OR lower({status}) <> 'converted')
  AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid}) AND {after}
ORDER BY l.id LIMIT 5000

-- name: lead_labels
SELECT * FROM followup_lead_labels WHERE {where} ORDER BY sequence_id, lead_id

-- ============================================================== handoff (handoff.py)

-- The skipped / outside_window tracking rows up to :now, oldest first ("{where}": since
-- :since, of account :a, both, or nothing).
-- name: handoff_window_skips
SELECT id, lead_id, account_id, sequence_id, message_id, step, variant_id, scheduled_at,
  claimed_at FROM followup_tracking
WHERE status = :status AND reason = :reason AND claimed_at <= :now AND {where}
ORDER BY claimed_at, lead_id, id

-- ====================================================== the lead store (leadstore.py)

-- leads init, the demo, the in-memory store: "{columns}": each lead column and its type
-- in the dialect (leadcolumns.COLUMNS, queries.definitions).
-- name: lead_table_create
CREATE TABLE IF NOT EXISTS {leads} (
  {columns}
)

-- name: lead_table_index
CREATE INDEX IF NOT EXISTS {index} ON {leads} (account_id, id)

-- name: lead_count
SELECT COUNT(*) AS n FROM {leads}

-- name: lead_table_kind@sqlite
SELECT type FROM sqlite_master WHERE name = :t AND type IN ('table', 'view')

-- name: lead_table_kind@postgres
SELECT c.relkind AS kind FROM pg_class c WHERE c.oid = to_regclass(:t)

-- name: index_list@sqlite
SELECT name FROM pragma_index_list(:t)

-- name: index_columns@sqlite
SELECT name FROM pragma_index_info(:i) ORDER BY seqno

-- Each index of the table and its columns in order.
-- name: index_column_lists@postgres
SELECT ARRAY(SELECT a.attname::text FROM unnest(ix.indkey) WITH ORDINALITY k(n, o)
  JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n ORDER BY k.o) AS cols
FROM pg_index ix WHERE ix.indrelid = to_regclass(:t)

-- sqlite-utils' connection (leads import): the rows a CSV would change, by id as text.
-- name: lead_rows_by_text_id@sqlite
SELECT * FROM {leads} WHERE CAST(id AS TEXT) IN ({ids})

-- leads check reads every row, a page at a time in the order of the id as text.
-- "{select}": the lead columns (SqlStore.select_list).
-- name: lead_check_first_page
SELECT {select} FROM {leads} l ORDER BY CAST(l.id AS TEXT) LIMIT 1000

-- name: lead_check_page
SELECT {select} FROM {leads} l WHERE CAST(l.id AS TEXT) > :after
ORDER BY CAST(l.id AS TEXT) LIMIT 1000

-- =================================== the next-due triggers (migrations.py 0004, 0010)
-- Any change to a lead's tracking rows bumps its enrollments' state_version and clears the
-- stored next_due_at, in the database itself (0004); an UPDATE of attempted_at alone does
-- not ("{meaning}": every other followup_tracking column, 0010).

-- name: next_due_on_insert@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_insert
AFTER INSERT ON followup_tracking BEGIN
UPDATE followup_enrollments SET state_version = state_version + 1,
    next_due_at = NULL WHERE lead_id = NEW.lead_id; END

-- name: next_due_on_update@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_update
AFTER UPDATE ON followup_tracking BEGIN
UPDATE followup_enrollments SET state_version = state_version + 1,
    next_due_at = NULL WHERE lead_id = NEW.lead_id; END

-- name: next_due_on_delete@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_delete
AFTER DELETE ON followup_tracking BEGIN
UPDATE followup_enrollments SET state_version = state_version + 1,
    next_due_at = NULL WHERE lead_id = OLD.lead_id; END

-- name: next_due_on_update_lead@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_update_lead
AFTER UPDATE OF lead_id ON followup_tracking BEGIN
UPDATE followup_enrollments SET state_version = state_version + 1,
    next_due_at = NULL WHERE lead_id = OLD.lead_id; END

-- name: next_due_on_meaning@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_update
AFTER UPDATE OF {meaning} ON followup_tracking BEGIN
UPDATE followup_enrollments SET state_version = state_version + 1,
    next_due_at = NULL WHERE lead_id = NEW.lead_id; END

-- name: next_due_function@postgres
CREATE OR REPLACE FUNCTION followup_tracking_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE followup_enrollments SET state_version = state_version + 1,
            next_due_at = NULL WHERE lead_id = OLD.lead_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE followup_enrollments SET state_version = state_version + 1,
            next_due_at = NULL WHERE lead_id = NEW.lead_id;
    END IF;
    RETURN NULL;
END $$

-- name: next_due_trigger@postgres
CREATE TRIGGER followup_tracking_changed
AFTER INSERT OR UPDATE OR DELETE ON followup_tracking
FOR EACH ROW EXECUTE FUNCTION followup_tracking_changed()

-- name: next_due_trigger_on_meaning@postgres
CREATE TRIGGER followup_tracking_changed
AFTER INSERT OR DELETE OR UPDATE OF {meaning} ON followup_tracking
FOR EACH ROW EXECUTE FUNCTION followup_tracking_changed()

-- 0011: a lead's reconcile mark is forgotten when one of its follow-ups or enrollments is
-- written, deleted or moved (its lead or its time).
-- name: mark_forget_tracking_insert@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_mark_insert
AFTER INSERT ON followup_tracking BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = NEW.lead_id; END

-- name: mark_forget_tracking_delete@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_mark_delete
AFTER DELETE ON followup_tracking BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = OLD.lead_id; END

-- name: mark_forget_tracking_update@sqlite
CREATE TRIGGER IF NOT EXISTS followup_tracking_mark_update
AFTER UPDATE OF lead_id, sent_at ON followup_tracking BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = OLD.lead_id;
DELETE FROM followup_outcome_marks WHERE lead_id = NEW.lead_id; END

-- name: mark_forget_enrollments_insert@sqlite
CREATE TRIGGER IF NOT EXISTS followup_enrollments_mark_insert
AFTER INSERT ON followup_enrollments BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = NEW.lead_id; END

-- name: mark_forget_enrollments_delete@sqlite
CREATE TRIGGER IF NOT EXISTS followup_enrollments_mark_delete
AFTER DELETE ON followup_enrollments BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = OLD.lead_id; END

-- name: mark_forget_enrollments_update@sqlite
CREATE TRIGGER IF NOT EXISTS followup_enrollments_mark_update
AFTER UPDATE OF lead_id, anchor_at ON followup_enrollments BEGIN
DELETE FROM followup_outcome_marks WHERE lead_id = OLD.lead_id;
DELETE FROM followup_outcome_marks WHERE lead_id = NEW.lead_id; END

-- name: mark_forget_function@postgres
CREATE OR REPLACE FUNCTION followup_outcome_mark_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM followup_outcome_marks WHERE lead_id = OLD.lead_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        DELETE FROM followup_outcome_marks WHERE lead_id = NEW.lead_id;
    END IF;
    RETURN NULL;
END $$

-- name: mark_forget_tracking@postgres
CREATE TRIGGER followup_tracking_mark_forget
AFTER INSERT OR DELETE OR UPDATE OF lead_id, sent_at ON followup_tracking
FOR EACH ROW EXECUTE FUNCTION followup_outcome_mark_forget()

-- name: mark_forget_enrollments@postgres
CREATE TRIGGER followup_enrollments_mark_forget
AFTER INSERT OR DELETE OR UPDATE OF lead_id, anchor_at ON followup_enrollments
FOR EACH ROW EXECUTE FUNCTION followup_outcome_mark_forget()

-- 0013: the same, never waiting: a mark another transaction holds (a reconcile writing it)
-- is left as it is (that reconcile read the rows before this one, as a reconcile that read
-- them just before this row was written would), so a claim never waits on a reconcile's
-- marks and the two cannot deadlock over them.
-- name: mark_forget_function_skip_locked@postgres
CREATE OR REPLACE FUNCTION followup_outcome_mark_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM followup_outcome_marks WHERE lead_id IN (SELECT m.lead_id
            FROM followup_outcome_marks m WHERE m.lead_id = OLD.lead_id
            FOR UPDATE SKIP LOCKED);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        DELETE FROM followup_outcome_marks WHERE lead_id IN (SELECT m.lead_id
            FROM followup_outcome_marks m WHERE m.lead_id = NEW.lead_id
            FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN NULL;
END $$

-- ============================================ the shared queries (store/base.py)

-- name: migrations_applied
SELECT name FROM followup_migrations ORDER BY name

-- name: migration_record
INSERT INTO followup_migrations (name, applied_at) VALUES (:name, :at)

-- Migration 0006: person keys for the rows written before people were tracked.
-- name: backfill_recipients
SELECT DISTINCT account_id, recipient_id FROM followup_tracking
WHERE recipient_id IS NOT NULL AND account_id IS NOT NULL AND person_key IS NULL

-- name: backfill_tracking_person
UPDATE followup_tracking SET person_key = :k
WHERE account_id = :a AND recipient_id = :r AND person_key IS NULL

-- name: backfill_enrollments_person
UPDATE followup_enrollments SET person_key = (SELECT MAX(t.person_key) FROM followup_tracking t
  WHERE t.lead_id = followup_enrollments.lead_id)
WHERE person_key IS NULL

-- "{select}": the lead columns (SqlStore._select_list), NULL for those the table lacks.
-- name: leads_sample
SELECT {select} FROM {leads} l LIMIT :n

-- The candidate prefilter (lead_reading.candidate_leads): an account's leads that may be
-- due, a page at a time. "{rows}": which of the account's rows (after :after_id, among
-- :among, or all); "{score}", "{converted_at}", "{status}", "{last_inbound_at}": the lead's
-- columns (NULL, typed on Postgres, for those the table lacks); "{keyword}": the keyword
-- term (the last message may hold an opt-out keyword). With a time to compare with
-- (:now), "{enrolled_due}" is candidate_enrolled_due and "{new_due}" candidate_new_due;
-- without, both always hold.
-- One probe of the lead's enrollments says which branch holds: 3, an active enrollment
-- that may be due (a candidate); 2, active ones none of which is due (not a candidate, and
-- not a new lead either); 1, an ended one that already covers the lead's current silence
-- (not a candidate); 0 or none, a lead in no sequence, whose own columns decide. The same
-- sets as an EXISTS for each branch, a third fewer probes (bench/RESULTS-select.md). On
-- SQLite a time is compared as its julianday(); a conversion time outside
-- julianday('1900-01-01') .. julianday('3000-01-01') (or not a time) is garbage the run
-- names (models.LEAD_TIME_MIN/MAX), not a conversion; the status is compared with LIKE,
-- which folds ASCII case as lower() does without a lowered copy of each row's status. A
-- score the run names as garbage (text, a blob, a REAL that is no integer or beyond 64
-- bits: 4.5, 1e23; Postgres: "{odd_score}", for a numeric, real or double precision
-- column) is kept whatever the range, so that the run names its row.
-- name: candidate_leads@sqlite
SELECT {select} FROM {leads} l
WHERE l.account_id = :account_id AND {rows}
  AND (
    CASE COALESCE((
        SELECT max(CASE WHEN e.ended_at IS NULL THEN CASE WHEN {enrolled_due} THEN 3 ELSE 2 END
                        WHEN {last_inbound_at} IS NULL
                          OR julianday(e.anchor_at) >= julianday({last_inbound_at}) THEN 1
                        ELSE 0 END)
        FROM followup_enrollments e WHERE e.lead_id = {lid}), 0)
      WHEN 3 THEN 1
      WHEN 0 THEN
        ({score} BETWEEN :min_score AND :max_score OR typeof({score}) IN ('text', 'blob')
          OR typeof({score}) = 'real' AND ({score} <> CAST({score} AS INTEGER)
            OR abs({score}) >= 9.2233720368547758e18))
        AND ({converted_at} IS NULL
             OR COALESCE(julianday({converted_at}) NOT BETWEEN 2415020.5 AND 2816787.5, 1))
        AND ({status} IS NULL OR {status} NOT LIKE 'converted')
        AND l.last_outbound_at IS NOT NULL
        AND COALESCE(julianday({last_inbound_at}) > julianday(l.last_outbound_at), 0) = 0
        AND {new_due}
        AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid})
      ELSE 0 END
    OR {keyword}
  )
ORDER BY l.id
LIMIT :page

-- The same on Postgres. A scalar subquery stays a per-row index probe; OFFSET 0 keeps the
-- opt-out NOT EXISTS one too (without it, under the OR, the planner hashes every opt-out
-- of every account for each page).
-- name: candidate_leads@postgres
SELECT {select} FROM {leads} l
WHERE l.account_id = :account_id AND {rows}
  AND (
    CASE COALESCE((
        SELECT max(CASE WHEN e.ended_at IS NULL THEN CASE WHEN {enrolled_due} THEN 3 ELSE 2 END
                        WHEN {last_inbound_at} IS NULL
                          OR e.anchor_at >= {last_inbound_at} THEN 1
                        ELSE 0 END)
        FROM followup_enrollments e WHERE e.lead_id = {lid}), 0)
      WHEN 3 THEN true
      WHEN 0 THEN
        ({score} BETWEEN :min_score AND :max_score OR {odd_score})
        AND ({converted_at} IS NULL
             OR {converted_at} NOT BETWEEN '1900-01-01Z' AND '3000-01-01Z')
        AND ({status} IS NULL OR lower({status}) <> 'converted')
        AND l.last_outbound_at IS NOT NULL
        AND COALESCE({last_inbound_at} > l.last_outbound_at, false) = false
        AND {new_due}
        AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid} OFFSET 0)
      ELSE false END
    OR {keyword}
  )
ORDER BY {lid}
LIMIT :page

-- An active enrollment whose stored next-due time is ahead, and nothing terminal happened
-- to the lead since (what would end it now), cannot be acted on: otherwise it may be due.
-- name: candidate_enrolled_due@sqlite
e.next_due_at IS NULL OR e.next_due_config IS NOT :config OR e.next_due_at <= :now
  OR NOT COALESCE({score} BETWEEN :min_score AND :max_score AND {converted_at} IS NULL
    AND ({status} IS NULL OR {status} NOT LIKE 'converted')
    AND ({last_inbound_at} IS NULL OR julianday({last_inbound_at}) <= julianday(e.anchor_at))
    AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid}), 0)

-- name: candidate_enrolled_due@postgres
e.next_due_at IS NULL OR e.next_due_config IS DISTINCT FROM :config OR e.next_due_at <= :now
  OR NOT COALESCE({score} BETWEEN :min_score AND :max_score AND {converted_at} IS NULL
    AND ({status} IS NULL OR lower({status}) <> 'converted')
    AND ({last_inbound_at} IS NULL OR {last_inbound_at} <= e.anchor_at)
    AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = {lid}), false)

-- A lead in no sequence: not before the shortest delay after our last message (a time
-- from year 3000 on is garbage: kept, for the run to name the row).
-- name: candidate_new_due@sqlite
(julianday(l.last_outbound_at) <= julianday(:new_due)
  OR julianday(l.last_outbound_at) IS NULL
  OR julianday(l.last_outbound_at) >= julianday('3000-01-01'))

-- name: candidate_new_due@postgres
(l.last_outbound_at <= :new_due OR l.last_outbound_at >= '3000-01-01Z')

-- The candidate census (engine: all of a run's accounts in a few statements instead of a pass
-- per account): the lead ids of "{lead_range}" that the candidate prefilter keeps, for each
-- account of the arrays (its score range, and when a lead in no sequence can be due). The
-- same leads as candidate_leads' query, which probes each lead's enrollments (a per-row
-- index probe, most of an account's pass); here every enrollment is read once, its lead's
-- in one row, merged with the leads in id order: the lead's enrollments say whether one is
-- active and stored as due (active_due), the least anchor of the active ones (the lead
-- spoke after one of them: not quiet) and the greatest anchor of the ended ones (one
-- covers the current silence). Each lead's account is looked up in the arrays
-- (array_position; a lead of no account in them has none and is left out) instead of joined
-- with them: under the census's plan settings the join was a nested loop, ten rows for
-- each lead, and a third of the statement's CPU at a million leads (bench/RESULTS-select.md).
-- A lead's opt-out is joined too (one row at most: lead_id is the key), merged in id order,
-- instead of probed for each lead that gets that far (~8 % of the statement's CPU).
-- "{score}", "{converted_at}", "{status}", "{last_inbound_at}": the lead's columns (a typed
-- NULL for those it lacks); "{keyword}": the keyword term.
-- name: candidate_census@postgres
WITH e AS (
  SELECT lead_id, bool_or(ended_at IS NULL) AS active,
    bool_or(ended_at IS NULL AND (next_due_at IS NULL
      OR next_due_config IS DISTINCT FROM :config OR next_due_at <= :now)) AS active_due,
    min(anchor_at) FILTER (WHERE ended_at IS NULL) AS active_anchor,
    max(anchor_at) FILTER (WHERE ended_at IS NOT NULL) AS ended_anchor
  FROM followup_enrollments WHERE {enrollment_range} GROUP BY lead_id)
SELECT CAST(l.account_id AS text) AS account_id, {lid} AS id
FROM {leads} l
CROSS JOIN LATERAL (
  SELECT array_position(CAST(:accounts AS text[]), CAST(l.account_id AS text)) AS k) a
LEFT JOIN e ON e.lead_id = {lid}
LEFT JOIN followup_optouts o ON o.lead_id = {lid}
WHERE {lead_range} AND a.k IS NOT NULL AND (
  CASE WHEN e.active THEN e.active_due
      OR NOT COALESCE({score} BETWEEN (CAST(:min_scores AS integer[]))[a.k]
          AND (CAST(:max_scores AS integer[]))[a.k]
        AND {converted_at} IS NULL AND ({status} IS NULL OR lower({status}) <> 'converted')
        AND ({last_inbound_at} IS NULL OR {last_inbound_at} <= e.active_anchor)
        AND o.lead_id IS NULL, false)
    WHEN e.ended_anchor IS NOT NULL
      AND ({last_inbound_at} IS NULL OR e.ended_anchor >= {last_inbound_at}) THEN false
    ELSE ({score} BETWEEN (CAST(:min_scores AS integer[]))[a.k]
        AND (CAST(:max_scores AS integer[]))[a.k] OR {odd_score})
      AND ({converted_at} IS NULL
           OR {converted_at} NOT BETWEEN '1900-01-01Z' AND '3000-01-01Z')
      AND ({status} IS NULL OR lower({status}) <> 'converted')
      AND l.last_outbound_at IS NOT NULL
      AND COALESCE({last_inbound_at} > l.last_outbound_at, false) = false
      AND (l.last_outbound_at <= (CAST(:new_dues AS timestamptz[]))[a.k]
        OR l.last_outbound_at >= '3000-01-01Z')
      AND o.lead_id IS NULL
    END
  OR {keyword})
ORDER BY 2

-- For the census's transaction: merge joins and sorted aggregates (both inputs in id order).
-- name: census_plan@postgres
SELECT set_config('enable_hashjoin', 'off', true) AS j, set_config('enable_hashagg', 'off', true) AS a

-- Where the planner's histogram of the lead table's id cuts it into :n parts of about the
-- same size (the census's ranges); no row when the table has no statistics (a view).
-- name: lead_id_cuts@postgres
SELECT s.b[(array_length(s.b, 1) * k) / :n + 1] AS cut
FROM (SELECT CAST(CAST(st.histogram_bounds AS text) AS text[]) AS b
      FROM pg_stats st JOIN pg_class c ON c.oid = to_regclass(:t)
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = 'id'
        AND st.histogram_bounds IS NOT NULL) s,
  generate_series(1, :n - 1) AS k
ORDER BY k

-- name: leads_without_id
SELECT COUNT(*) AS n FROM {leads} l WHERE l.account_id = :a AND l.id IS NULL

-- name: lead_row
SELECT {select} FROM {leads} l WHERE l.id = :id

-- "{ids}": l.id IN (...) for one chunk of ids (SqlStore._lead_id_in).
-- name: lead_rows
SELECT {select} FROM {leads} l WHERE {ids}

-- name: lead_ids_present
SELECT l.id FROM {leads} l WHERE {ids}

-- The persons an account holds under more than one lead row (person_inbound.py), asked
-- once a run for an account with candidates: one pass over the account's rows (the host's
-- table may have no index on recipient_id), grouped by recipient id; a person with two
-- rows is named by its two ids (read again by id), one with more by its count (then
-- person_rows_of_account). A blank recipient id is nobody (left out by the caller).
-- At 100k rows an account, SQLite: 0.14 s CPU, against 0.17-0.24 s for the window below.
-- name: person_pairs_of_account
SELECT trim(CAST(l.recipient_id AS TEXT)) AS r, count(*) AS n,
  min(CAST(l.id AS TEXT)) AS lo, max(CAST(l.id AS TEXT)) AS hi
FROM {leads} l
WHERE l.account_id = :a AND l.id IS NOT NULL
GROUP BY trim(CAST(l.recipient_id AS TEXT)) HAVING count(*) > 1

-- Each row of those persons: id, recipient id and last inbound time.
-- "{inbound_at}": l.last_inbound_at, or NULL when the lead table lacks it.
-- name: person_rows_of_account
SELECT p.id, p.recipient_id, p.last_inbound_at FROM (
  SELECT l.id AS id, l.recipient_id AS recipient_id, {inbound_at} AS last_inbound_at,
    count(*) OVER (PARTITION BY trim(CAST(l.recipient_id AS TEXT))) AS n
  FROM {leads} l
  WHERE l.account_id = :a AND l.id IS NOT NULL AND trim(CAST(l.recipient_id AS TEXT)) <> ''
) p WHERE p.n > 1

-- One person's rows (explain).
-- name: person_rows_of_recipient
SELECT l.id AS id, l.recipient_id AS recipient_id, {inbound_at} AS last_inbound_at
FROM {leads} l
WHERE l.account_id = :a AND l.id IS NOT NULL AND trim(CAST(l.recipient_id AS TEXT)) = :r

-- name: enrollment_versions
SELECT lead_id, sequence_id, state_version FROM followup_enrollments
WHERE {ids} AND ended_at IS NULL

-- What the tool knows of a chunk of leads (lead_states.py): "{ids}": lead_id IN (...).
-- name: lead_state_followups
SELECT lead_id, sequence_id, message_id, variant_id, status, reason, sent_at, claimed_at
FROM followup_tracking WHERE {ids} ORDER BY id

-- name: lead_state_enrollments
SELECT lead_id, sequence_id, anchor_at, started_at, ended_at, ended_reason, holdout
FROM followup_enrollments WHERE {ids}

-- name: lead_state_optouts
SELECT lead_id, reason FROM followup_optouts WHERE {ids}

-- The same of a chunk of persons: "{keys}": person_key IN (...).
-- name: person_state_followups
SELECT lead_id, person_key, sequence_id, message_id, variant_id, status, reason, sent_at,
  claimed_at
FROM followup_tracking WHERE {keys} ORDER BY id

-- name: person_state_enrollments
SELECT lead_id, person_key, sequence_id, ended_at FROM followup_enrollments WHERE {keys}

-- name: person_state_suppressions
SELECT person_key, kind, reason FROM followup_suppressions WHERE {keys}

-- Store a next-due time only if the enrollment's version is still the one read.
-- name: next_due_set
UPDATE followup_enrollments SET next_due_at = :due, next_due_config = :cfg
WHERE lead_id = :l AND sequence_id = :s AND state_version = :v AND ended_at IS NULL

-- One statement for a page instead of a round trip per enrollment. SKIP LOCKED: a row
-- another transaction is changing (a claim, another run's reconcile) is left for the next
-- run rather than waited for, so this never waits on, or deadlocks with, a transaction
-- that locks many leads' enrollments in another order.
-- name: next_due_set_many@postgres
UPDATE followup_enrollments e SET next_due_at = v.due, next_due_config = :cfg
FROM (SELECT e2.lead_id, e2.sequence_id, v.due FROM followup_enrollments e2
      JOIN unnest(CAST(:l AS text[]), CAST(:s AS text[]), CAST(:v AS integer[]),
                  CAST(:d AS timestamptz[])) AS v(l, s, ver, due)
        ON e2.lead_id = v.l AND e2.sequence_id = v.s AND e2.state_version = v.ver
       AND e2.ended_at IS NULL
      FOR UPDATE OF e2 SKIP LOCKED) v
WHERE e.lead_id = v.lead_id AND e.sequence_id = v.sequence_id

-- name: followup
SELECT * FROM followup_tracking WHERE id = :id

-- name: followups
SELECT * FROM followup_tracking WHERE {where} ORDER BY id LIMIT :limit

-- The predicate of the partial index followup_tracking_open, word for word: SQLite uses a
-- partial index only when the query's WHERE contains its predicate (rows.OPEN_STATUSES).
-- name: open_statuses
status IN ('pending', 'unknown')

-- name: followups_open_count
SELECT COUNT(*) AS n FROM followup_tracking WHERE status IN ('pending', 'unknown') AND status = :s

-- name: enrollment_start
INSERT INTO followup_enrollments (lead_id, sequence_id, account_id, anchor_at, started_at,
  holdout, person_key)
VALUES (:l, :s, :a, :anchor, :now, :h, :p)
ON CONFLICT (lead_id, sequence_id) DO NOTHING

-- name: enrollment_end
UPDATE followup_enrollments SET ended_at = :now, ended_reason = :r
WHERE lead_id = :l AND sequence_id = :s AND ended_at IS NULL

-- name: enrollment_active
ended_at IS NULL

-- name: enrollments
SELECT * FROM followup_enrollments WHERE {where} ORDER BY lead_id

-- name: bad_lead_noted
SELECT 1 AS x FROM followup_audit WHERE lead_id = :l AND action = 'bad_lead' AND detail = :d

-- name: audit_log
SELECT * FROM followup_audit ORDER BY id DESC LIMIT :n

-- name: audit_log_of_lead
SELECT * FROM followup_audit WHERE lead_id = :l ORDER BY id DESC LIMIT :n

-- name: config_seen
INSERT INTO followup_config_seen (digest, path, actor, first_seen_at) VALUES (:d, :p, :a, :now)
ON CONFLICT (digest) DO NOTHING

-- name: run_start
INSERT INTO followup_runs (run_id, host, pid, actor, started_at, heartbeat_at, business_now)
VALUES (:r, :h, :p, :a, :w, :w, :n)

-- The other runs that have not finished and heartbeated lately (``leases.py``).
-- name: runs_unfinished_others
SELECT run_id, host, pid, heartbeat_at, finished_at FROM followup_runs
WHERE finished_at IS NULL AND run_id <> :r AND heartbeat_at > :since

-- name: run_finish
UPDATE followup_runs SET finished_at = :w, heartbeat_at = :w, exit_code = :c, summary = :s
WHERE run_id = :r

-- A live run shows it is alive, each batch (``AccountRun``): its open claims are not a
-- dead run's.
-- name: run_heartbeat
UPDATE followup_runs SET heartbeat_at = :w WHERE run_id = :r

-- ============================== the dialect seam (store/sqlite.py, store/postgres.py)

-- Locks: Postgres takes transaction-level advisory locks (SQLite's BEGIN IMMEDIATE already
-- serialises every writer). The key names the schema that holds the tool's tables, so that
-- two deployments (or two test schemas) in one database never take each other's lead "l1"
-- for claimed by another run.
-- name: lock_try@postgres
SELECT pg_try_advisory_xact_lock(hashtextextended(COALESCE(current_schema(), '') || :k, 0)) AS ok

-- name: lock_wait@postgres
SELECT pg_advisory_xact_lock(hashtextextended(COALESCE(current_schema(), '') || :k, 0)) AS ok

-- A claim batch's leads, each try-locked (never waited for) in one round trip: the ids of
-- those locked.
-- name: leads_try_lock@postgres
SELECT k AS lead_id,
  pg_try_advisory_xact_lock(hashtextextended(COALESCE(current_schema(), '') || :prefix || k, 0))
    AS ok
FROM unnest(CAST(:ids AS text[])) AS k

-- An account's lease (``leases.py``): a session-level advisory lock, held by the run that
-- serves the account until it is done with it, and dropped by the server with the
-- connection (a run killed with SIGKILL leaves none behind). Its own key, not the
-- account's transaction lock above: the holder's other connections take that one.
-- name: lease_try@postgres
SELECT pg_try_advisory_lock(hashtextextended(COALESCE(current_schema(), '') || :k, 0)) AS ok

-- name: lease_release@postgres
SELECT pg_advisory_unlock(hashtextextended(COALESCE(current_schema(), '') || :k, 0)) AS ok

-- The enrollments of the leads a transaction may write, locked in one order (lead id, as
-- reconcile takes them, then sequence): a claim batch takes them first, so it never holds
-- one lead's rows while it waits for another's that a reconcile, holding the first one's
-- next, waits for (``SqlStore.lock_lead_rows``).
-- Before them, the transaction's own claims it will write (a tracking row, then its lead's
-- enrollments: the order of a row's writer whose trigger moves the enrollments).
-- name: claims_lock@postgres
SELECT 1 AS x FROM followup_tracking WHERE id = ANY(:ids) ORDER BY id FOR UPDATE

-- name: lead_rows_lock@postgres
SELECT 1 AS x FROM followup_enrollments WHERE lead_id = ANY(:ids)
ORDER BY lead_id, sequence_id FOR UPDATE

-- An erasure's leads' tracking rows, by id, before it writes any of them (then their
-- enrollments, ``lead_rows_lock``).
-- name: erase_tracking_lock@postgres
SELECT 1 AS x FROM followup_tracking WHERE {ids} ORDER BY id FOR UPDATE

-- name: lock_migrations@postgres
SELECT pg_advisory_xact_lock(hashtextextended('followup:migrate', 0)) AS ok

-- Before an erasure: deleted content is overwritten, not just unlinked.
-- name: erase_begin@sqlite
PRAGMA secure_delete = ON

-- name: table_columns@sqlite
PRAGMA table_info({table})

-- name: table_columns@postgres
SELECT column_name, data_type FROM information_schema.columns
WHERE table_name = :t AND table_schema = COALESCE(NULLIF(:s, ''), current_schema())
ORDER BY ordinal_position

-- name: table_owned@postgres
SELECT pg_has_role(current_user, c.relowner, 'USAGE') AS owns FROM pg_class c
WHERE c.oid = to_regclass(:t)

-- name: vacuum_full@postgres
VACUUM (FULL) {table}

-- A running cron job holds its tables: wait a little, never for its whole run.
-- name: lock_timeout_short@postgres
SET lock_timeout = '15s'

-- name: lock_timeout_reset@postgres
RESET lock_timeout

-- ======================================= host lead rows (demo/, store/memory.py)

-- Lead rows as a host app writes them. "{columns}": the lead columns
-- (leadcolumns.COLUMN_NAMES); "{values}": their placeholders.
-- name: leads_insert@sqlite
INSERT INTO {leads} ({columns}) VALUES ({values})

-- ================================================ status and backlog (status.py, backlog.py)

-- name: unknown_by_account
SELECT account_id, COUNT(*) AS n FROM followup_tracking WHERE status = :s GROUP BY account_id

-- name: backlog_lost_said
SELECT id FROM followup_audit
WHERE action = 'backlog_lost' AND account_id = :a AND at >= :start AND at <= :now

-- The claim path (sending.py, claims.py): a claim is a pending tracking row.
-- name: claim_insert
INSERT INTO followup_tracking ({cols}) VALUES ({values})
ON CONFLICT (lead_id, sequence_id, message_id) DO NOTHING RETURNING id

-- A batch's claims (``{values}``: one row of placeholders per claim); the ids of those
-- inserted, by their key (a step another run claimed first has no row here).
-- name: claims_insert
INSERT INTO followup_tracking ({cols}) VALUES {values}
ON CONFLICT (lead_id, sequence_id, message_id) DO NOTHING
RETURNING id, lead_id, sequence_id, message_id

-- name: enrollments_start
INSERT INTO followup_enrollments (lead_id, sequence_id, account_id, anchor_at, person_key,
  started_at, holdout)
VALUES {values}
ON CONFLICT (lead_id, sequence_id) DO NOTHING

-- name: claim_update
UPDATE followup_tracking SET {sets} WHERE id = :_id AND {only}

-- name: claim_delete
DELETE FROM followup_tracking WHERE id = :id AND {only}

-- The attempt mark: only a claim not yet attempted, of a lead that has not opted out
-- since (and, in claim_mark_attempted_person, of a person not suppressed since).
-- name: claim_mark_attempted
UPDATE followup_tracking SET attempted_at = :now WHERE id = :id
AND status = :p AND attempted_at IS NULL
AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = :l)

-- name: claim_mark_attempted_person
UPDATE followup_tracking SET attempted_at = :now WHERE id = :id
AND status = :p AND attempted_at IS NULL
AND NOT EXISTS (SELECT 1 FROM followup_optouts o WHERE o.lead_id = :l)
AND NOT EXISTS (SELECT 1 FROM followup_suppressions s WHERE s.person_key = :k)

-- Claims never handed to the API: of a run, or of some ids.
-- name: claims_release_unattempted
DELETE FROM followup_tracking WHERE status IN ('pending', 'unknown') AND status = :p
AND attempted_at IS NULL AND {which}

-- Pending claims joined with their run's liveness data.
-- name: claims_open
SELECT t.id, t.lead_id, t.sequence_id, t.message_id, t.account_id, t.claimed_at,
  t.attempted_at, t.run_id, r.host, r.pid, r.heartbeat_at, r.finished_at
FROM followup_tracking t LEFT JOIN followup_runs r ON r.run_id = t.run_id
WHERE t.status IN ('pending', 'unknown') AND t.status = :p

-- The sliding rate window: an account's claims since :since with a status that counts
-- (models.COUNTED, checked by test_queries); the capped count stops at :cap.
-- name: window_count
SELECT COUNT(*) AS n FROM followup_tracking WHERE account_id = :a AND claimed_at > :since
AND status IN ('pending', 'sent', 'delivered', 'read', 'responded', 'converted', 'unknown')

-- name: window_count_capped
SELECT COUNT(*) AS n FROM (SELECT 1 FROM followup_tracking WHERE account_id = :a
  AND claimed_at > :since
  AND status IN ('pending', 'sent', 'delivered', 'read', 'responded', 'converted', 'unknown')
  LIMIT :cap) capped

-- name: window_oldest
SELECT MIN(claimed_at) AS claimed_at FROM followup_tracking WHERE account_id = :a
AND claimed_at > :since
AND status IN ('pending', 'sent', 'delivered', 'read', 'responded', 'converted', 'unknown')
