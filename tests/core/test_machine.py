"""A hypothesis state machine drives the real Engine on a real SQLite store.

Two workers lease, report random results, renew, release, and let leases expire (so their
attempts become ``lost`` and their late reports are fenced out); an operator submits,
cancels, resumes and pauses. After every step the contract's guarantees must hold and the
log must replay to exactly the stored state (``Engine.verify``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import Counter, defaultdict

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import mainspring as ms
from mainspring.core import events as E
from mainspring.core.clock import ManualClock
from mainspring.core.model import Backoff, Policy, Run, TaskOptions
from mainspring.core.retry import counted_attempts, lost_attempts
from mainspring.core.states import TERMINAL
from mainspring.engine import Engine, Finished, SubmitRequest
from mainspring.store import open_store

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
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ms-machine-")
        self.store = open_store(f"sqlite:///{self.dir}/m.db?synchronous=off")
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

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def runs(self) -> dict[str, Run]:
        with self.store.read() as tx:
            return tx.snapshot().runs

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
        # the worker learns which of its running handlers lost their lease
        if housekeeping:
            assert sorted(res.lost) == [r for r in still_running if before[r].lease_owner != worker]
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
        held = self.held[worker]
        if not held:
            return
        before = self.runs()
        snapshots: dict[str, bytes] = {}
        lost = self.engine.renew(worker, sorted(held), LEASE, snapshots)
        self.snapshots.update(snapshots)
        assert set(snapshots) == set(held) - lost
        now = self.clock.now()
        for rid in held:
            run = before[rid]
            still_mine = (
                run.lease_owner == worker
                and run.state not in TERMINAL
                and run.lease_expires_at is not None
                and run.lease_expires_at > now
            )
            assert (rid not in lost) is still_mine
        after = self.runs()
        for rid in set(held) - lost:
            assert after[rid].lease_expires_at == now + LEASE

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
        pool = suspended if suspended and data.draw(st.booleans()) else sorted(runs)
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
    def log_replays_to_the_stored_state(self) -> None:
        assert self.engine.verify() == []


# MAINSPRING_MACHINE_EXAMPLES=2000 for a long hunt; the default keeps the suite fast.
EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MAINSPRING_MACHINE_EXAMPLES", "50")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineMachine = EngineMachine.TestCase
