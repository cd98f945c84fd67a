"""A hypothesis state machine drives the real Engine on each real store.

Two workers lease, report random results, renew, release, and let leases expire (so their
attempts become ``lost`` and their late reports are fenced out); they also register in the
worker registry, heartbeat, leave, and outlive their registration (so the next heartbeat
removes them, and their own next heartbeat registers them again). An operator submits,
cancels, resumes and pauses. After every step the contract's guarantees must hold, the
registry must list exactly the live workers, and the log must replay to exactly the stored
state (``Engine.verify``).

The machine runs once per store (tests/conftest.py's ``store_kind``): on SQLite every
instance gets a file of its own, on PostgreSQL a schema of its own in the run's throwaway
database (nothing is dropped per instance: the database goes at the end of the run).
``MAINSPRING_MACHINE_EXAMPLES=2000`` runs a long hunt on both.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from typing import ClassVar

import msgspec
import pytest
from conftest import pg_schema_url
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import mainspring as ms
from mainspring.core import events as E
from mainspring.core.clock import ManualClock
from mainspring.core.model import Backoff, Policy, Run, TaskOptions, WorkerRecord
from mainspring.core.reducer import WORKERS as WORKER_RECORDS
from mainspring.core.retry import counted_attempts, lost_attempts
from mainspring.core.states import TERMINAL
from mainspring.engine import Engine, Finished, Registration, SubmitRequest
from mainspring.store import Store, open_store

S = ms.RunState
R = ms.AttemptResult
LEASE = 30.0
WORKERS = ("w0", "w1")
KEYS = ("k0", "k1")
NAME = "job"
REPORTABLE = [R.SUCCESS, R.RETRYABLE, R.TERMINAL, R.TIMEOUT, R.SUSPENDED]
BACKOFFS = [
    Backoff.fixed(0),
    Backoff.fixed(2),
    Backoff.exponential(initial=1, factor=2, maximum=20, jitter=True),
]
# the lease a worker registers and heartbeats with (it renews its run leases with it too)
REGISTRY_LEASES = [2.0, 10.0, LEASE]
# what a worker says of itself: host, pid, queues, tasks, concurrency
Details = tuple[str, int, list[str] | None, list[str], int]
DETAILS = st.tuples(
    st.sampled_from(["h0", "h1"]),
    st.integers(1, 99_999),
    st.none() | st.lists(st.sampled_from(["default", "q1"]), unique=True, max_size=2),
    st.just([NAME]) | st.just([NAME, "other"]),
    st.integers(1, 8),
)
enc = msgspec.json.Encoder()

Spec = tuple[int, int, str | None, str, float | None, Backoff]
SPECS = st.lists(
    st.tuples(
        st.integers(1, 4),  # max_attempts
        st.integers(1, 3),  # max_lost
        st.none() | st.sampled_from(KEYS),  # concurrency key
        st.sampled_from(["hold", "release"]),  # key_policy
        st.none() | st.sampled_from([0.0, 3.0, 40.0]),  # delay
        st.sampled_from(BACKOFFS),
    ),
    min_size=1,
    max_size=3,
)


def leasable(run: Run, holders: dict[str, set[str]], limits: dict[str, int]) -> bool:
    """A ready run a worker asking for work must get (its key, if any, has room)."""
    if run.state != S.READY:
        return False
    k = run.concurrency_key
    return k is None or len(holders[k] - {run.run_id}) < limits[k]


class EngineMachine(RuleBasedStateMachine):
    """The machine on the store ``new_store`` opens (each subclass: one kind of store)."""

    def new_store(self) -> Store:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.store = self.new_store()
        self.clock = ManualClock()
        self.engine = Engine(self.store, clock=self.clock)
        self.key_limits: dict[str, int] = {}
        self.options: dict[str, TaskOptions] = {}  # run_id -> options it was submitted with
        self.held: dict[str, dict[str, str]] = {w: {} for w in WORKERS}  # run_id -> attempt_id
        # run_id -> Leased.snapshot: a report that hands it back is decided before the lock,
        # and must come out exactly as one decided under it (renewals, cancels, expiry and
        # releases in between make it stale)
        self.snapshots: dict[str, bytes | None] = {}
        self.terminal: dict[str, bytes] = {}  # run_id -> its record when it became terminal
        self.submitted = 0
        self.paused = False
        # the worker registry. regs: the registration each worker (process) heartbeats with;
        # beats: the registered, not-left workers -> their last heartbeat + lease (live while
        # in the future); records: the records the store must hold (an expired worker's stays
        # until another worker's heartbeat removes it); expired: workers removed as expired
        self.regs: dict[str, Registration] = {}
        self.beats: dict[str, float] = {}
        self.records: dict[str, WorkerRecord] = {}
        self.expired: set[str] = set()
        self._runs: tuple[int, dict[str, Run]] | None = None  # (log's last seq, runs then)

    def teardown(self) -> None:
        self.store.close()

    def runs(self) -> dict[str, Run]:
        """The stored runs (not to be changed). Every change appends to the log, so they are
        read again only when it grew: the invariants after a step share one read. (A change
        without an event would be a bug: ``verify`` reads afresh and reports it.)"""
        with self.store.read() as tx:
            seq = tx.last_seq()
            if self._runs is None or self._runs[0] != seq:
                self._runs = (seq, tx.snapshot().runs)
        return self._runs[1]

    def last_seq(self) -> int:
        with self.store.read() as tx:
            return tx.last_seq()

    def worker_events(self, since: int) -> list[tuple[str, str]]:
        """The registry's events after ``since``: (type, worker id)."""
        with self.store.read() as tx:
            events = tx.events(since, None, 10_000)
        return [(e.type, e.data["worker_id"]) for e in events if e.type.startswith("worker.")]

    def heartbeat_recorded(self, reg: Registration, lease: float, since: int) -> None:
        """``reg`` heartbeat (or registered) with ``lease`` in the transaction after ``since``:
        its record moved (or was created: it was not in the store), and every other worker
        whose expiry had come was removed."""
        now = self.clock.now()
        w = reg.worker_id
        rec = self.records.get(w)
        if rec is None:
            first = E.WORKER_REGISTERED
            self.records[w] = WorkerRecord(
                worker_id=w,
                host=reg.host,
                pid=reg.pid,
                queues=None if reg.queues is None else list(reg.queues),
                tasks=list(reg.tasks),
                concurrency=reg.concurrency,
                started_at=now,
                last_seen_at=now,
                expires_at=now + lease,
            )
        else:  # known: only the heartbeat moves, what it said when it registered stays
            first = E.WORKER_HEARTBEAT
            self.records[w] = msgspec.structs.replace(rec, last_seen_at=now, expires_at=now + lease)
        gone = sorted(k for k, r in self.records.items() if k != w and r.expires_at <= now)
        for k in gone:
            del self.records[k]
        expected = [(first, w)] + [(E.WORKER_EXPIRED, k) for k in gone]
        assert self.worker_events(since) == expected
        if w in self.expired:
            # removed as expired while it was merely late: it registers again, anew
            assert first == E.WORKER_REGISTERED
            with self.store.read() as tx:
                stored = {r.worker_id: r for r in tx.records(WORKER_RECORDS)}
            assert stored[w].started_at == now
            assert stored[w].pid == reg.pid
        self.expired.discard(w)
        self.expired.update(gone)
        self.beats[w] = now + lease

    # -- rules -------------------------------------------------------------------------------
    @initialize(limits=st.tuples(st.integers(1, 2), st.integers(1, 2)), specs=SPECS)
    def start(self, limits: tuple[int, int], specs: list[Spec]) -> None:
        self.key_limits = dict(zip(KEYS, limits, strict=True))
        self.submit(specs)

    @rule(specs=SPECS)
    def submit(self, specs: list[Spec]) -> None:
        now = self.clock.now()
        reqs = []
        for max_attempts, max_lost, key, key_policy, delay, backoff in specs:
            opts = TaskOptions(
                max_attempts=max_attempts,
                max_lost=max_lost,
                backoff=backoff,
                concurrency_key=key,
                concurrency_limit=self.key_limits[key] if key else 1,
                key_policy=key_policy,
            )
            reqs.append(
                SubmitRequest(
                    name=NAME,
                    args=[self.submitted],
                    kwargs={},
                    options=opts,
                    policy=Policy() if delay is None else Policy(start_at=now + delay),
                    concurrency_key=key,
                )
            )
            self.submitted += 1
        subs = self.engine.submit_many(reqs) if len(reqs) > 1 else [self.engine.submit(reqs[0])]
        assert len(subs) == len(reqs)
        for sub, req, spec in zip(subs, reqs, specs, strict=True):
            assert len(sub.run_ids) == 1  # policy once: exactly one run
            run = self.engine.get_run(sub.run_ids[0])
            assert run.task_id == sub.task_id
            assert run.state == (S.SCHEDULED if spec[4] else S.READY)
            assert run.concurrency_key == req.concurrency_key
            assert run.attempts == []
            self.options[run.run_id] = req.options

    @rule(
        worker=st.sampled_from(WORKERS),
        want=st.integers(0, 4),
        housekeeping=st.booleans(),
        data=st.data(),
    )
    def cycle(self, worker: str, want: int, housekeeping: bool, data: st.DataObject) -> None:
        """A worker reports some of the attempts it holds and asks for more work."""
        self._cycle(worker, want, data, report_all=False, housekeeping=housekeeping)

    @rule(worker=st.sampled_from(WORKERS), want=st.integers(1, 4), data=st.data())
    def work(self, worker: str, want: int, data: st.DataObject) -> None:
        """A busy worker: it reports everything it holds and asks for more."""
        self._cycle(worker, want, data, report_all=True)

    def _cycle(
        self,
        worker: str,
        want: int,
        data: st.DataObject,
        *,
        report_all: bool,
        housekeeping: bool = True,
    ) -> None:
        held = self.held[worker]
        before = self.runs()
        reports: list[Finished] = []
        expected_accept: set[str] = set()
        for run_id in sorted(held):
            if not report_all and not data.draw(st.booleans(), label=f"report {run_id}"):
                continue
            result = data.draw(st.sampled_from(REPORTABLE), label="result")
            delay = None
            if result == R.RETRYABLE:
                delay = data.draw(st.none() | st.sampled_from([0.0, 4.0]), label="retry_delay")
            reports.append(
                Finished(
                    run_id=run_id,
                    attempt_id=held[run_id],
                    result=result,
                    output={"n": 1} if result == R.SUCCESS else None,
                    error=None if result == R.SUCCESS else f"{result.value} error",
                    retry_delay=delay,
                    options=self.options[run_id] if data.draw(st.booleans()) else None,
                    snapshot=self.snapshots[run_id] if data.draw(st.booleans()) else None,
                )
            )
            run = before.get(run_id)
            att = run.open_attempt() if run is not None else None
            if (
                run is not None
                and run.state == S.RUNNING
                and att is not None
                and att.attempt_id == held[run_id]
                and run.lease_owner == worker
            ):
                expected_accept.add(run_id)

        reported = {f.run_id for f in reports}
        still_running = sorted(set(held) - reported)
        res = self.engine.cycle(
            worker,
            [NAME],
            None,
            reports,
            want,
            LEASE,
            housekeeping=housekeeping,
            held=still_running,
        )

        # fencing: exactly the reports of attempts this worker still held were recorded
        assert set(res.accepted) == expected_accept
        assert set(res.rejected) == reported - expected_accept
        for rid in reported:
            del held[rid]
        # the worker learns which of its running handlers lost their lease: taken from it
        # before this turn, or expired by this turn (its housekeeping expires leases first)
        if housekeeping:
            now = self.clock.now()

            def gone(rid: str) -> bool:
                run = before[rid]
                ends = run.lease_expires_at
                return run.lease_owner != worker or (ends is not None and ends <= now)

            assert sorted(res.lost) == [r for r in still_running if gone(r)]
        assert len(res.leased) <= want
        if self.paused:
            assert res.leased == []

        after = self.runs()
        for f in reports:
            if f.run_id not in expected_accept:
                continue
            run = after[f.run_id]
            att = next(a for a in run.attempts if a.attempt_id == f.attempt_id)
            assert att.result == f.result.value
            assert att.finished_at == self.clock.now()
            opts = self.options[f.run_id]
            if f.result == R.SUCCESS:
                assert run.state == S.COMPLETED
                assert run.output == {"n": 1}
            elif f.result == R.TERMINAL:
                assert run.state == S.FAILED
            elif f.result == R.SUSPENDED:
                assert run.state == S.SUSPENDED
            elif counted_attempts(run) >= opts.max_attempts:
                assert run.state == S.FAILED
                assert counted_attempts(run) == opts.max_attempts
            else:
                assert run.state not in TERMINAL

        for lease in res.leased:
            assert lease.run_id not in self.terminal, "a terminal run was dispatched again"
            run = after[lease.run_id]
            assert run.state == S.RUNNING
            assert run.lease_owner == worker
            assert lease.task_name == NAME
            assert lease.lease_expires_at == self.clock.now() + LEASE
            assert lease.attempt == len(run.attempts)
            assert run.attempts[-1].attempt_id == lease.attempt_id
            assert run.attempts[-1].started_at == self.clock.now()
            held[lease.run_id] = lease.attempt_id
            self.snapshots[lease.run_id] = lease.snapshot

        # work-conserving: a worker that got less than it asked for left nothing leasable
        if not self.paused and len(res.leased) < want:
            holders: dict[str, set[str]] = defaultdict(set)
            for r in after.values():
                if r.holds_key and r.concurrency_key is not None:
                    holders[r.concurrency_key].add(r.run_id)
            stuck = [r.run_id for r in after.values() if leasable(r, holders, self.key_limits)]
            assert stuck == [], f"ready runs left behind: {stuck}"

    @rule(
        seconds=st.sampled_from([0.5, 1.0, 2.0, 5.0, 15.0, LEASE + 1, 100.0]),
        housekeeping=st.booleans(),
    )
    def advance(self, seconds: float, housekeeping: bool) -> None:
        self.clock.advance(seconds)
        if housekeeping:
            self.engine.housekeeping()

    @rule(worker=st.sampled_from(WORKERS))
    def renew(self, worker: str) -> None:
        if self.held[worker]:
            self._renew(worker, sorted(self.held[worker]), LEASE, None)

    @rule(
        worker=st.sampled_from(WORKERS),
        with_runs=st.booleans(),
        lease=st.sampled_from(REGISTRY_LEASES),
        details=DETAILS,
    )
    def heartbeat(self, worker: str, with_runs: bool, lease: float, details: Details) -> None:
        """A worker renews its leases (or none) with a heartbeat: the registration it
        started with, or (never registered, or it left) a new one."""
        reg = self.regs.get(worker) or Registration(worker, *details)
        self.regs[worker] = reg
        self._renew(worker, sorted(self.held[worker]) if with_runs else [], lease, reg)

    def _renew(
        self, worker: str, ids: list[str], lease: float, heartbeat: Registration | None
    ) -> None:
        before = self.runs()
        since = self.last_seq()
        snapshots: dict[str, bytes] = {}
        lost = self.engine.renew(worker, ids, lease, snapshots, heartbeat=heartbeat)
        self.snapshots.update(snapshots)
        assert set(snapshots) == set(ids) - lost
        now = self.clock.now()
        for rid in ids:
            run = before[rid]
            still_mine = (
                run.lease_owner == worker
                and run.state not in TERMINAL
                and run.lease_expires_at is not None
                and run.lease_expires_at > now
            )
            assert (rid not in lost) is still_mine
        after = self.runs()
        for rid in set(ids) - lost:
            was = before[rid].lease_expires_at
            assert was is not None
            assert after[rid].lease_expires_at == max(now + lease, was)  # never shortened
        if heartbeat is None:
            assert self.worker_events(since) == []
        else:
            self.heartbeat_recorded(heartbeat, lease, since)

    @rule(worker=st.sampled_from(WORKERS), details=DETAILS, lease=st.sampled_from(REGISTRY_LEASES))
    def register(self, worker: str, details: Details, lease: float) -> None:
        """A worker process starts (a worker still registered under its id: a heartbeat)."""
        reg = Registration(worker, *details)
        since = self.last_seq()
        self.engine.register_worker(reg, lease)
        self.regs[worker] = reg
        self.heartbeat_recorded(reg, lease, since)

    @rule(worker=st.sampled_from(WORKERS))
    def leave(self, worker: str) -> None:
        """A worker stops cleanly: its record goes at once (if the store still had it)."""
        since = self.last_seq()
        self.engine.worker_left(worker)
        expected = [(E.WORKER_LEFT, worker)] if worker in self.records else []
        assert self.worker_events(since) == expected
        for d in (self.regs, self.beats, self.records):
            d.pop(worker, None)
        self.expired.discard(worker)

    @precondition(lambda self: bool(self.beats))
    @rule(data=st.data(), past=st.sampled_from([0.0, 0.5, 3.0]), housekeeping=st.booleans())
    def outlive(self, data: st.DataObject, past: float, housekeeping: bool) -> None:
        """The clock reaches a registered worker's expiry (exactly, or beyond it)."""
        worker = data.draw(st.sampled_from(sorted(self.beats)), label="outlive")
        self.clock.t = max(self.clock.now(), self.beats[worker] + past)
        if housekeeping:
            self.engine.housekeeping()

    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def release(self, worker: str, data: st.DataObject) -> None:
        held = self.held[worker]
        if not held:
            return
        ids = data.draw(st.lists(st.sampled_from(sorted(held)), unique=True, min_size=1))
        before = self.runs()
        self.engine.release(worker, ids, "worker stopping")
        after = self.runs()
        for rid in ids:
            del held[rid]
            assert after[rid].lease_owner != worker
            b = before[rid]
            if b.lease_owner == worker and b.state == S.RUNNING:
                assert after[rid].attempts[len(b.attempts) - 1].result == R.LOST

    @precondition(lambda self: self.submitted > 0)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.options)), label="cancel")
        before = self.runs()[rid]
        changed = self.engine.cancel_run(rid, "operator")
        assert changed is (S(before.state) not in TERMINAL)
        after = self.engine.get_run(rid)
        if changed:
            assert after.state == S.CANCELED
            assert after.lease_owner is None
            assert after.open_attempt() is None
        else:
            assert enc.encode(after) == enc.encode(before)

    @precondition(lambda self: self.submitted > 0)
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        runs = self.runs()
        suspended = sorted(r for r, run in runs.items() if run.state == S.SUSPENDED)
        pick_suspended = bool(suspended) and data.draw(st.booleans())
        pool = suspended if pick_suspended else sorted(runs)
        rid = data.draw(st.sampled_from(pool), label="resume")
        was = runs[rid].state
        assert self.engine.resume_run(rid) is (was == S.SUSPENDED)
        now = self.engine.get_run(rid).state
        assert now == (S.READY if was == S.SUSPENDED else was)

    @rule(choice=st.integers(0, 3))
    def pause(self, choice: int) -> None:
        paused = choice == 3  # pausing is rarer than resuming, so work gets done
        assert self.engine.set_paused(paused) is (paused != self.paused)
        self.paused = paused

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def guarantees_hold(self) -> None:
        runs = self.runs()
        assert len(runs) == self.submitted  # exactly the runs the policy implies
        holding: Counter[str] = Counter()
        busy: Counter[str] = Counter()
        for rid, run in runs.items():
            state = S(run.state)  # every run state is a RunState
            opts = self.options[rid]
            # attempts: numbered 1..n, bounded, at most one open and only while running
            assert [a.number for a in run.attempts] == list(range(1, len(run.attempts) + 1))
            assert counted_attempts(run) <= opts.max_attempts
            assert lost_attempts(run) <= opts.max_lost
            open_atts = [a for a in run.attempts if a.finished_at is None]
            assert len(open_atts) <= 1
            if state == S.RUNNING:
                assert len(open_atts) == 1
                assert open_atts[0] is run.attempts[-1]
            else:
                assert open_atts == []
            for a in run.attempts:
                assert (a.result is None) is (a.finished_at is None)
                if a.result is not None:
                    R(a.result)
            # leases: held exactly while leased or running
            if state in (S.LEASED, S.RUNNING):
                assert run.lease_owner in WORKERS
                assert run.lease_expires_at is not None
            else:
                assert run.lease_owner is None
                assert run.lease_expires_at is None
            # concurrency keys
            if run.concurrency_key is not None:
                assert run.concurrency_key == opts.concurrency_key
                if state in (S.LEASED, S.RUNNING):
                    busy[run.concurrency_key] += 1
                    assert run.holds_key
                if run.holds_key:
                    holding[run.concurrency_key] += 1
            else:
                assert not run.holds_key
            if state in TERMINAL:
                assert not run.holds_key
            if state == S.FAILED and run.reason == "lost":
                assert lost_attempts(run) == opts.max_lost
            if state == S.COMPLETED:
                assert run.attempts[-1].result == R.SUCCESS
            if state == S.SUSPENDED:
                assert run.attempts[-1].result == R.SUSPENDED
        for key, limit in self.key_limits.items():
            assert busy[key] <= limit, f"key {key}: {busy[key]} runs leased/running, limit {limit}"
            assert holding[key] <= limit, f"key {key}: {holding[key]} holders, limit {limit}"

    @invariant()
    def terminal_runs_never_change(self) -> None:
        for rid, run in self.runs().items():
            if rid in self.terminal:
                assert enc.encode(run) == self.terminal[rid], f"terminal run {rid} changed"
            elif S(run.state) in TERMINAL:
                self.terminal[rid] = enc.encode(run)

    @invariant()
    def log_is_an_unbroken_chain(self) -> None:
        with self.store.read() as tx:
            events = list(tx.iter_all_events())
            assert tx.paused() is self.paused
        seqs = [e.seq for e in events]
        assert all(a < b for a, b in itertools.pairwise(seqs))
        chain: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for e in events:
            if e.type == E.RUN_STATE_CHANGED:
                assert e.run_id is not None
                chain[e.run_id].append((e.data["from"], e.data["to"]))
        for rid, run in self.runs().items():
            state = "scheduled"
            for frm, to in chain[rid]:
                assert frm == state
                state = to
            assert state == run.state

    @invariant()
    def registry_lists_the_live_workers(self) -> None:
        now = self.clock.now()
        with self.store.read() as tx:
            stored = {r.worker_id: r for r in tx.records(WORKER_RECORDS)}
        assert stored == self.records
        holding: dict[str, list[str]] = defaultdict(list)
        for rid, run in self.runs().items():
            if run.lease_owner is not None:
                holding[run.lease_owner].append(rid)
        live = self.engine.workers()
        # exactly the registered, not-left workers whose last heartbeat + lease is ahead
        assert sorted(r.worker_id for r, _ in live) == sorted(
            w for w, expires in self.beats.items() if expires > now
        )
        for rec, run_ids in live:
            assert rec == self.records[rec.worker_id]
            assert sorted(run_ids) == sorted(holding[rec.worker_id])

    @invariant()
    def log_replays_to_the_stored_state(self) -> None:
        assert self.engine.verify() == []


class SQLiteMachine(EngineMachine):
    def new_store(self) -> Store:
        self.dir = tempfile.mkdtemp(prefix="ms-machine-")
        return open_store(f"sqlite:///{self.dir}/m.db?synchronous=off")

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresMachine(EngineMachine):
    #: the run's throwaway database (conftest's ``pg_database``), set by the test
    database: ClassVar[str] = ""

    def new_store(self) -> Store:
        assert self.database, "set PostgresMachine.database first"
        return open_store(pg_schema_url(self.database, prefix="machine"))


# MAINSPRING_MACHINE_EXAMPLES=2000 for a long hunt (on both stores); the defaults keep the
# suite fast. A PostgreSQL step costs several round trips per read, so it runs fewer.
_examples = os.environ.get("MAINSPRING_MACHINE_EXAMPLES")
_common = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SETTINGS = {
    "sqlite": settings(_common, max_examples=int(_examples or 50), stateful_step_count=30),
    "postgres": settings(_common, max_examples=int(_examples or 30), stateful_step_count=30),
}


def machine_class(store_kind: str, request: pytest.FixtureRequest) -> type[EngineMachine]:
    if store_kind == "sqlite":
        return SQLiteMachine
    PostgresMachine.database = request.getfixturevalue("pg_database")  # skips, or fails in CI
    return PostgresMachine


# A failure is shrunk for up to 300 s (Hypothesis's own limit) before it is reported: past
# the suite's timeout on PostgreSQL, which would cut the report (the minimal program) off.
@pytest.mark.timeout(600)
def test_engine_machine(store_kind: str, request: pytest.FixtureRequest) -> None:
    run_state_machine_as_test(machine_class(store_kind, request), settings=SETTINGS[store_kind])


def check(m: EngineMachine) -> None:
    m.guarantees_hold()
    m.terminal_runs_never_change()
    m.log_is_an_unbroken_chain()
    m.registry_lists_the_live_workers()
    m.log_replays_to_the_stored_state()


def test_a_worker_removed_as_expired_registers_again(
    store_kind: str, request: pytest.FixtureRequest
) -> None:
    """The machine's registry model on the path it takes only now and then, walked every
    run: a late worker is removed by another's heartbeat, then heartbeats and is new."""
    m = machine_class(store_kind, request)()
    try:
        m.start((1, 1), [(1, 1, None, "hold", None, BACKOFFS[0])])
        m.register("w0", ("h0", 100, None, [NAME], 2), 2.0)
        m.register("w1", ("h1", 200, ["q1"], [NAME], 1), LEASE)
        check(m)
        m.advance(2.0, housekeeping=False)  # w0's expiry: not live, still stored
        check(m)
        assert set(m.records) == {"w0", "w1"}
        assert [r.worker_id for r, _ in m.engine.workers()] == ["w1"]
        m.heartbeat("w1", with_runs=False, lease=LEASE, details=("x", 0, None, [], 1))
        check(m)
        assert set(m.records) == {"w1"}
        assert m.expired == {"w0"}
        m.heartbeat("w0", with_runs=False, lease=2.0, details=("x", 0, None, [], 1))
        check(m)
        (w0,) = [r for r, _ in m.engine.workers() if r.worker_id == "w0"]
        now = m.clock.now()
        assert (w0.started_at, w0.last_seen_at, w0.expires_at) == (now, now, now + 2.0)
        assert (w0.host, w0.pid, w0.concurrency) == ("h0", 100, 2)  # what it registered with
        assert m.expired == set()
    finally:
        m.teardown()
