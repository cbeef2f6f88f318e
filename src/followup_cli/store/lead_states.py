"""What the tool knows about leads (``LeadState``): their tracking rows, enrollments and
opt-outs, and the person's, a few queries a chunk of leads; the next-due hints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..models import EnrollmentRecord, FollowupRecord, LeadState, PersonEnrollment
from .rows import _chunks, _followup_record


class StateQueries:
    """Mixed into ``SqlStore``: uses its seam (``query``, ``execute``, ``transaction``,
    locks) and its other queries."""

    # --------------------------------------------------------- lead states
    def lead_states(
        self, lead_ids: Sequence[str], persons: dict[str, str | None] | None = None
    ) -> dict[str, LeadState]:
        """Tracking rows, enrollments and opt-outs for many leads, a few queries a chunk; with
        ``persons`` (lead id -> person key, ``person_key``) also what the person received
        under other lead rows, and the person's opt-out or erasure."""
        followups, enrollments, optouts = self._lead_rows_state(lead_ids)
        keys = {lid: k for lid, k in (persons or {}).items() if k}
        p_follow, p_enrol, p_supp = self._person_rows_state(keys)
        p_enrol = self._mark_gone(p_enrol, lead_ids)
        out: dict[str, LeadState] = {}
        for lid in lead_ids:
            key = keys.get(lid)
            kind, why = p_supp.get(key, (None, None)) if key else (None, None)
            out[lid] = LeadState(
                followups=tuple(followups.get(lid, ())),
                enrollments=tuple(enrollments.get(lid, ())),
                optout_reason=optouts.get(lid),
                opted_out=lid in optouts,
                suppression=kind,
                suppression_reason=why,
                person_followups=tuple(f for other, f in p_follow.get(key, ()) if other != lid)
                if key
                else (),
                person_enrollments=tuple(e for e in p_enrol.get(key, ()) if e.lead_id != lid)
                if key
                else (),
            )
        return out

    def _lead_rows_state(
        self, lead_ids: Sequence[str]
    ) -> tuple[
        dict[str, list[FollowupRecord]], dict[str, list[EnrollmentRecord]], dict[str, str | None]
    ]:
        """Each lead's own tracking rows (in order), enrollments and opt-out reason."""
        followups: dict[str, list[FollowupRecord]] = {}
        enrollments: dict[str, list[EnrollmentRecord]] = {}
        optouts: dict[str, str | None] = {}
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._in_list("lead_id", chunk)
            for r in self.rows(self.q("lead_state_followups", ids=where), names):
                followups.setdefault(r["lead_id"], []).append(_followup_record(r))
            for r in self.rows(self.q("lead_state_enrollments", ids=where), names):
                enrollments.setdefault(r["lead_id"], []).append(
                    EnrollmentRecord(
                        sequence_id=r["sequence_id"],
                        anchor_at=r["anchor_at"],
                        started_at=r["started_at"],
                        ended_at=r["ended_at"],
                        ended_reason=r["ended_reason"],
                        holdout=bool(r["holdout"]),
                    )
                )
            for r in self.query(self.q("lead_state_optouts", ids=where), names):
                optouts[r["lead_id"]] = r["reason"]
        return followups, enrollments, optouts

    def _person_rows_state(
        self, keys: dict[str, str]
    ) -> tuple[
        dict[str, list[tuple[str, FollowupRecord]]],
        dict[str, list[PersonEnrollment]],
        dict[str, tuple[str, str | None]],
    ]:
        """By person key: the tracking rows and enrollments of every lead row of the person,
        and the person's suppression (opt-out or erasure)."""
        p_follow: dict[str, list[tuple[str, FollowupRecord]]] = {}
        p_enrol: dict[str, list[PersonEnrollment]] = {}
        p_supp: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(sorted(set(keys.values())), 500):
            where, names = self._in_list("person_key", chunk)
            for r in self.rows(self.q("person_state_followups", keys=where), names):
                p_follow.setdefault(r["person_key"], []).append((r["lead_id"], _followup_record(r)))
            for r in self.rows(self.q("person_state_enrollments", keys=where), names):
                p_enrol.setdefault(r["person_key"], []).append(
                    PersonEnrollment(r["lead_id"], r["sequence_id"], r["ended_at"])
                )
            for r in self.query(self.q("person_state_suppressions", keys=where), names):
                p_supp[r["person_key"]] = (r["kind"], r["reason"])
        return p_follow, p_enrol, p_supp

    def _mark_gone(
        self, p_enrol: dict[str, list[PersonEnrollment]], lead_ids: Sequence[str]
    ) -> dict[str, list[PersonEnrollment]]:
        """An active enrollment of a lead row the host has since deleted holds nobody back."""
        open_ids = sorted(
            {e.lead_id for es in p_enrol.values() for e in es if e.ended_at is None} - set(lead_ids)
        )
        if open_ids:
            present = set(self._present_lead_ids(open_ids))
            p_enrol = {
                k: [
                    replace(e, gone=True)
                    if e.ended_at is None and e.lead_id not in present and e.lead_id in open_ids
                    else e
                    for e in es
                ]
                for k, es in p_enrol.items()
            }
        return p_enrol

    def enrollment_versions(self, lead_ids: Sequence[str]) -> dict[tuple[str, str], int]:
        """``state_version`` of each active enrollment of these leads, by (lead, sequence).

        Read *before* the state a decision uses: a next-due time stored under this version
        is then never older than the tracking rows it was decided from."""
        out: dict[tuple[str, str], int] = {}
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._in_list("lead_id", chunk)
            for r in self.query(self.q("enrollment_versions", ids=where), names):
                out[(r["lead_id"], r["sequence_id"])] = int(r["state_version"])
        return out

    def set_next_due(self, rows: Sequence[tuple[str, str, int, datetime]], config: str) -> int:
        """Store (lead, sequence, version, next due) for active enrollments whose version is
        unchanged since it was read; a run then leaves them out of its candidates until
        then (or until their tracking rows change, or the config does). Returns rows set."""
        n = 0
        with self.transaction():
            for lead_id, sequence_id, version, due in rows:
                n += self.execute(
                    self.q("next_due_set"),
                    {"due": due, "cfg": config, "l": lead_id, "s": sequence_id, "v": version},
                )
        return n

    def _present_lead_ids(self, lead_ids: Sequence[str]) -> list[str]:
        """Which of these lead ids the lead table holds (all of them when it cannot say)."""
        from ..errors import ConfigError

        try:
            self.lead_columns()
        except ConfigError:
            return list(lead_ids)
        out: list[str] = []
        for chunk in _chunks(list(lead_ids), 500):
            where, names = self._lead_id_in(chunk)
            sql = self.q("lead_ids_present", leads=self.leads, ids=where)
            out.extend(str(r["id"]) for r in self.query(sql, names))
        return out

    def lead_state(self, lead_id: str, person: str | None = None) -> LeadState:
        """One lead's state; ``person``: its person key (``person_key``), for the person's
        opt-outs and what the person received under other lead rows."""
        return self.lead_states([lead_id], {lead_id: person} if person else None)[lead_id]
