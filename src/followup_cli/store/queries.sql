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
