"""The database consistency check every load test and fault test ends with.

It reads the dispatcher's own tables (no gRPC) and answers three questions:

- **accounted for**: every panda_id a client was given exists, and no job exists that no client
  was given (a retried ``SubmitJobs`` that created a second copy shows up here). A call whose
  reply never arrived (cut at the end of a run, or out of retries) may still have committed: its
  jobs are accounted for through its ``request_id`` (``unanswered``), exactly as a client retrying
  with that id would get them back; a job no request explains stays a violation;
- **dispatched once**: no ``sent`` event appears twice for one ``(panda_id, lease_epoch)`` (every
  dispatch bumps the epoch, so a repeat means two pilots got the same lease), no job reached
  ``finished`` twice, and what pilots saw agrees (``assignments`` given by the caller);
- **none lost**: each job's event chain is unbroken (every event starts where the previous one
  ended, the last one ends in the job's current state), and with ``expect_final`` every job is in
  a final state.

Violations are listed, not raised, so a caller prints them all; ``ok`` sums it up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, create_engine, text

FINAL = frozenset({"finished", "failed", "cancelled", "closed"})
_SHOW = 5  # examples per kind of violation


@dataclass(kw_only=True)
class Consistency:
    """The outcome of :func:`check`: counts per state and every violation found."""

    jobs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    sent_events: int = 0
    unanswered_jobs: int = 0
    """Jobs committed by SubmitJobs calls whose reply the client never got (found by request_id)."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.problems

    def summary(self) -> str:
        """One line per fact, then the violations (at most a few examples of each)."""
        states = ", ".join(f"{k} {v:,}" for k, v in sorted(self.by_status.items()))
        lines = [f"consistency: {self.jobs:,} jobs ({states}); {self.sent_events:,} dispatches"]
        if self.unanswered_jobs:
            lines.append(
                f"consistency: {self.unanswered_jobs:,} jobs of SubmitJobs calls whose reply was cut "
                "(committed; found by their request_id)"
            )
        if self.ok:
            lines.append("consistency: OK (all accounted for, none dispatched twice, none lost)")
        else:
            lines += [f"consistency: VIOLATION {p}" for p in self.problems]
        return "\n".join(lines)


def _examples(items: Iterable[object]) -> str:
    seq = list(items)
    shown = ", ".join(str(x) for x in seq[:_SHOW])
    return f"{len(seq)} (e.g. {shown})"


def _committed_ids(conn: Connection, requests: Iterable[tuple[str, str]]) -> set[int]:
    """panda_ids the dispatcher stored for these ``(owner, request_id)`` (those that committed)."""
    wanted = set(requests)
    ids: set[int] = set()
    if not wanted:
        return ids
    for owner, rid, panda_ids in conn.execute(text("SELECT owner, request_id, panda_ids FROM submit_requests")):
        if (owner, rid) in wanted:
            ids.update(int(x) for x in panda_ids.split(",") if x)
    return ids


def check(
    db_url: str,
    *,
    submitted: Iterable[int] | None = None,
    assignments: Iterable[tuple[int, int]] | None = None,
    expect_final: bool = False,
    unanswered: Iterable[tuple[str, str]] | None = None,
) -> Consistency:
    """Check the database at ``db_url`` (see module docstring).

    ``submitted``: every panda_id clients were given (``None``: skip the accounting check).
    ``assignments``: every ``(panda_id, lease_epoch)`` pilots received (``None``: skip).
    ``expect_final``: the load was drained, so every job must have ended.
    ``unanswered``: ``(owner, request_id)`` of SubmitJobs calls that got no reply.
    """
    out = Consistency()
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            status = {int(pid): st for pid, st in conn.execute(text("SELECT panda_id, status FROM jobs"))}
            events: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
            rows = conn.execute(
                text("SELECT panda_id, from_status, to_status, lease_epoch FROM job_events ORDER BY event_id")
            )
            for pid, src, dst, epoch in rows:
                events[int(pid)].append((src, dst, int(epoch)))
            committed_unanswered = _committed_ids(conn, unanswered or ())
    finally:
        engine.dispose()

    out.jobs = len(status)
    out.by_status = dict(Counter(status.values()))
    if submitted is not None:
        given = Counter(submitted)
        dup_given = [pid for pid, n in given.items() if n > 1]
        if dup_given:
            out.problems.append(f"panda_ids handed to two submitters: {_examples(dup_given)}")
        missing = sorted(set(given) - set(status))
        if missing:
            out.problems.append(f"submitted but not in the database: {_examples(missing)}")
        extra = sorted(set(status) - set(given) - committed_unanswered)
        if committed_unanswered:
            out.unanswered_jobs = len(committed_unanswered - set(given))
        if extra:
            out.problems.append(f"in the database but never handed to a client (duplicates?): {_examples(extra)}")

    sent: Counter[tuple[int, int]] = Counter()
    finished_twice = []
    broken = []
    for pid, chain in events.items():
        prev = ""
        for src, dst, epoch in chain:
            if dst == "sent":
                sent[(pid, epoch)] += 1
            if src != prev:
                broken.append(f"{pid}:{prev or '-'}->[{src}->{dst}]")
                break
            prev = dst
        else:
            if pid in status and prev != status[pid]:
                broken.append(f"{pid}:events end in {prev}, job is {status[pid]}")
        if sum(1 for _, dst, _ in chain if dst == "finished") > 1:
            finished_twice.append(pid)
    out.sent_events = sum(sent.values())
    twice = [k for k, n in sent.items() if n > 1]
    if twice:
        out.problems.append(f"(panda_id, epoch) dispatched more than once: {_examples(twice)}")
    if finished_twice:
        out.problems.append(f"jobs finished more than once: {_examples(finished_twice)}")
    if broken:
        out.problems.append(f"broken event chains: {_examples(broken)}")
    no_history = sorted(set(status) - set(events))
    if no_history:
        out.problems.append(f"jobs without any event: {_examples(no_history)}")

    if assignments is not None:
        seen = Counter(assignments)
        dup_seen = [k for k, n in seen.items() if n > 1]
        if dup_seen:
            out.problems.append(f"pilots received one lease twice: {_examples(dup_seen)}")
        unknown = [k for k in seen if k not in sent]
        if unknown:
            out.problems.append(f"pilots received leases the database never recorded: {_examples(unknown)}")
    if expect_final:
        open_jobs = sorted(pid for pid, st in status.items() if st not in FINAL)
        if open_jobs:
            out.problems.append(
                f"jobs not in a final state after draining: {_examples(f'{p}:{status[p]}' for p in open_jobs)}"
            )
    return out
