"""``mainspring demo``: five short scenarios on a fresh embedded store.

1. retries: a flaky task fails twice and succeeds on its third attempt;
2. crash and recover: a real worker process is killed with SIGKILL while a slow task runs;
   its lease expires, the attempt is recorded as ``lost``, and a second worker process
   completes the same run;
3. a keyed task: runs sharing a concurrency key with limit 1 never overlap;
4. a schedule: a six-field cron that fires every second, limited to three occurrences,
   derives exactly three runs;
5. a workflow: an order that reserves stock (a step), sleeps durably, waits for an
   approval signal the demo sends, charges a card (a step that fails once and is retried
   in place) and ships in a child run; its steps are shown at the end.

The tasks live in a small generated module (``mainspring_demo_app.py`` in the demo directory) so the
worker processes of scenario 2 import exactly what this process runs. Narration is printed
line by line (fine for CI logs); on a terminal a live progress bar runs underneath.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..app import App, RunInfo
from . import _render as out

LEASE_SECONDS = 2.0
MODULE = "mainspring_demo_app"
SLEEP_SECONDS = 1.5  # the workflow's durable sleep (real time)
SCENARIOS = 5

DEMO_APP = '''\
"""The tasks of `mainspring demo` (generated; safe to read and to rerun)."""

import os
import time

import mainspring as ms

app = ms.App({store!r}, lease_seconds={lease!r})


@app.task(name="demo.flaky", max_attempts=3, backoff=ms.Backoff.fixed(0.2))
def flaky(order_id: str) -> dict:
    attempt = ms.context().attempt
    if attempt < 3:
        raise ConnectionError(f"payment gateway unreachable (attempt {{attempt}})")
    return {{"order_id": order_id, "charged_on_attempt": attempt}}


@app.task(name="demo.slow", queue="crash", backoff=ms.Backoff.fixed(0.2))
def slow(seconds: float) -> dict:
    ctx = ms.context()
    time.sleep(seconds)
    return {{"attempt": ctx.attempt, "worker_pid": os.getpid()}}


@app.task(name="demo.keyed", concurrency_key="{{account}}", concurrency_limit=1)
def keyed(account: str, n: int) -> dict:
    start = time.time()
    time.sleep(0.25)
    return {{"account": account, "n": n, "start": start, "end": time.time()}}


@app.task(name="demo.tick")
def tick(label: str) -> dict:
    return {{"label": label, "at": time.time()}}


CHARGE_TRIES: dict = {{}}  # tries per order, so the first charge fails (a flaky gateway)


@app.step(name="demo.reserve_stock")
def reserve_stock(order_id: str) -> dict:
    return {{"order_id": order_id, "reserved": 2}}


@app.step(name="demo.charge_card", max_attempts=3, backoff=ms.Backoff.fixed(0.1))
def charge_card(order_id: str, amount: int) -> dict:
    CHARGE_TRIES[order_id] = CHARGE_TRIES.get(order_id, 0) + 1
    if CHARGE_TRIES[order_id] == 1:
        raise ConnectionError("card gateway timed out")
    return {{"order_id": order_id, "charged": amount}}


@app.task(name="demo.ship")
def ship(order_id: str) -> dict:
    return {{"order_id": order_id, "tracking": "TRK-" + order_id}}


@app.workflow(name="demo.order")
def order(order_id: str) -> dict:
    stock = reserve_stock(order_id)
    ms.sleep({sleep!r})  # durable: the run holds no worker slot while it sleeps
    approval = ms.wait_for("approve", timeout=60)
    if approval is None:
        raise ms.Fail("nobody approved the order")
    charge = charge_card(order_id, approval["amount"])
    shipment = ship.submit(order_id)  # a child run, started once
    return {{"stock": stock, "charge": charge, "shipment": shipment.result()}}
'''


@dataclass
class Outcome:
    name: str
    happened: str = ""
    runs: int = 0
    attempts: int = 0
    verify_ok: bool = False
    ok: bool = False
    problems: list[str] = field(default_factory=list)


class DemoFailed(Exception):
    pass


class Narrator:
    """Prints the story line by line; shows a progress bar when stdout is a terminal."""

    def __init__(self, quiet: bool, total: int) -> None:
        self.quiet = quiet
        self.console = out.console()
        self.progress: Progress | None = None
        self.total = total
        self.task: Any = None

    def __enter__(self) -> Narrator:
        if not self.quiet and self.console.is_terminal:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def say(self, text: str | Text, style: str = "") -> None:
        if self.quiet:
            return
        self.console.print(text if isinstance(text, Text) else Text(text, style=style))

    def status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)


def _absolute(url: str) -> str:
    """The demo's worker processes run in the demo directory: make sqlite paths absolute."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path, sep, query = url[len("sqlite:///") :].partition("?")
        return "sqlite:///" + os.path.abspath(path) + sep + query
    return url


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _attempt_line(run: RunInfo) -> list[str]:
    lines = []
    for a in run.attempts:
        text = f"    attempt {a.number}: {a.result}"
        if a.error and a.error.startswith(f"{a.result}: "):  # "lost: the lease of ..."
            text = f"    attempt {a.number}: {a.error}"
        elif a.error:
            text += f" ({a.error})"
        lines.append(text)
    return lines


@contextmanager
def _worker(app: App, queues: list[str]) -> Iterator[Any]:
    with app.worker(concurrency=4, queues=queues, grace_seconds=2.0) as w:
        yield w


# -- the scenarios ----------------------------------------------------------------------------
def retries(app: App, mod: ModuleType, say: Narrator) -> Outcome:
    o = Outcome("retries")
    say.say(
        "[1/5] retries: demo.flaky fails twice, then succeeds (max_attempts=3, fixed backoff 0.2 s)",
        "bold",
    )
    say.status("retries: waiting for demo.flaky")
    h = mod.flaky.submit("order-1001")
    with _worker(app, ["default"]) as w:
        w.run_until_idle(timeout=30)
    info = h.info()
    for line in _attempt_line(info):
        say.say(line)
    results = [a.result for a in info.attempts]
    o.runs, o.attempts = 1, len(info.attempts)
    o.ok = info.state == "completed" and results == ["retryable", "retryable", "success"]
    o.happened = f"{len(results) - 1} retryable failures, then success on attempt {len(results)}"
    if not o.ok:
        o.problems.append(f"expected retryable, retryable, success; got {results} ({info.state})")
    return o


def crash(app: App, mod: ModuleType, say: Narrator, directory: str, store: str) -> Outcome:
    o = Outcome("crash and recover")
    say.say(
        f"[2/5] crash and recover: a worker process is killed (SIGKILL) mid-attempt; lease_seconds={LEASE_SECONDS:g}",
        "bold",
    )
    h = mod.slow.submit(2.0)
    cmd = [
        sys.executable,
        "-m",
        "mainspring.cli.main",
        "worker",
        f"{MODULE}:app",
        "--store",
        store,
        "--queue",
        "crash",
        "--concurrency",
        "1",
    ]
    logfile = open(os.path.join(directory, "workers.log"), "ab")  # noqa: SIM115
    procs: list[subprocess.Popen[bytes]] = []
    try:
        say.status("crash: starting worker process 1")
        first = subprocess.Popen(cmd, cwd=directory, stdout=logfile, stderr=logfile)
        procs.append(first)
        say.say(f"    worker process {first.pid} started")
        _wait(
            "worker 1 to start demo.slow",
            lambda: h.status() == "running" or first.poll() is not None,
            30,
        )
        if first.poll() is not None:
            raise DemoFailed(
                f"worker 1 exited early with code {first.returncode}; see {logfile.name}"
            )
        first.kill()
        first.wait()
        say.say(
            f"    killed worker {first.pid} with SIGKILL while run {h.run_id} was {h.status()}",
            "red",
        )
        say.status("crash: waiting for the lease to expire; worker process 2 (--burst)")
        second = subprocess.Popen([*cmd, "--burst"], cwd=directory, stdout=logfile, stderr=logfile)
        procs.append(second)
        say.say(f"    worker process {second.pid} started with --burst")
        try:
            second.wait(timeout=45)
        except subprocess.TimeoutExpired:
            raise DemoFailed("worker 2 did not finish within 45 s") from None
        if second.returncode != 0:
            raise DemoFailed(f"worker 2 exited with code {second.returncode}; see {logfile.name}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        logfile.close()
    info = h.info()
    for line in _attempt_line(info):
        say.say(line)
    results = [a.result for a in info.attempts]
    o.runs, o.attempts = 1, len(info.attempts)
    o.ok = info.state == "completed" and results == ["lost", "success"]
    o.happened = "worker killed mid-attempt: attempt 1 lost, the same run completed on attempt 2"
    if not o.ok:
        o.problems.append(f"expected lost, success; got {results} ({info.state})")
    return o


def keyed(app: App, mod: ModuleType, say: Narrator) -> Outcome:
    o = Outcome("keyed task")
    accounts = ["acct-42", "acct-7"]
    say.say(
        "[3/5] keyed task: 3 runs each for accounts acct-42 and acct-7, concurrency_key='{account}', "
        "limit 1, 4 worker threads",
        "bold",
    )
    say.status("keyed: running demo.keyed")
    handles = [mod.keyed.submit(acct, n) for n in range(3) for acct in accounts]
    with _worker(app, ["default"]) as w:
        w.run_until_idle(timeout=30)
    infos = [h.info() for h in handles]
    o.runs = len(infos)
    o.attempts = sum(len(i.attempts) for i in infos)
    t0 = min((i.output["start"] for i in infos if i.state == "completed"), default=0.0)
    overlaps = 0
    spans_by_key: dict[str, list[tuple[float, float]]] = {}
    for acct in accounts:
        spans = sorted(
            (i.output["start"] - t0, i.output["end"] - t0)
            for i in infos
            if i.state == "completed" and i.output["account"] == acct
        )
        spans_by_key[acct] = spans
        say.say(f"    {acct}: " + ", ".join(f"{s:.2f}-{e:.2f} s" for s, e in spans))
        overlaps += sum(1 for (_, e1), (s2, _) in itertools.pairwise(spans) if s2 < e1)
    a, b = (spans_by_key[k] for k in accounts)
    side_by_side = any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)
    done = all(i.state == "completed" for i in infos)
    o.ok = done and overlaps == 0
    o.happened = f"{o.runs} runs, never two of one key at once ({overlaps} overlaps)"
    if side_by_side:
        o.happened += "; the two keys ran side by side"
    if not done:
        o.problems.append("not every keyed run completed")
    if overlaps:
        o.problems.append(f"{overlaps} overlapping runs of one key")
    return o


def schedule(app: App, mod: ModuleType, say: Narrator) -> Outcome:
    o = Outcome("schedule")
    say.say('[4/5] schedule: cron "* * * * * *" (every second), max_occurrences=3', "bold")
    say.status("schedule: waiting for three occurrences")
    t = mod.tick.schedule(cron="* * * * * *", max_occurrences=3, kwargs={"label": "every second"})
    with _worker(app, ["default"]):
        _wait(
            "three completed occurrences",
            lambda: sum(r.state == "completed" for r in t.runs()) >= 3,
            20,
        )
        time.sleep(1.5)  # give a fourth occurrence every chance to appear
    infos = sorted(t.runs(), key=lambda r: r.scheduled_at)
    for r in infos:
        say.say(f"    run {r.run_id} scheduled {out.when(r.scheduled_at)}: {r.state}")
    o.runs = len(infos)
    o.attempts = sum(len(i.attempts) for i in infos)
    o.ok = len(infos) == 3 and all(i.state == "completed" for i in infos)
    o.happened = f"{len(infos)} runs, one per second, then nothing more"
    if not o.ok:
        o.problems.append(f"expected exactly 3 completed runs, got {[i.state for i in infos]}")
    return o


def workflow(app: App, mod: ModuleType, say: Narrator) -> Outcome:
    o = Outcome("workflow")
    say.say(
        f"[5/5] workflow: demo.order reserves stock, sleeps {SLEEP_SECONDS:g} s (durable), waits "
        "for the signal 'approve', charges the card and ships in a child run",
        "bold",
    )
    started = time.monotonic()
    h = mod.order.with_options(execution_id="order-1001").submit("order-1001")
    say.say(f"    run {h.run_id}, execution id order-1001")
    seen: list[str] = []
    with _worker(app, ["default"]):

        def moved() -> bool:
            """Narrate each suspension once (what `mainspring why` says); send the signal
            once the workflow waits for it."""
            info = app.get_run(h.run_id)
            if info.state.terminal:
                return True
            reasons = app.why(h.run_id).reasons
            reason = reasons[0].data.get("reason") if reasons else None
            if info.state == "suspended" and reason not in seen:
                seen.append(str(reason))
                say.say(f"    {reasons[0].text}")
                if reason == "signal":
                    app.signal("order-1001", "approve", {"amount": 42, "by": "the demo"})
                    say.say(
                        '    sent signal \'approve\' with payload {"amount": 42, "by": "the demo"}'
                    )
            return False

        say.status("workflow: sleeping, then waiting for the signal")
        _wait("the workflow to end", moved, 30)
    elapsed = time.monotonic() - started
    info = h.info()
    steps = h.steps()
    for st in steps:
        text = f"    step {st.number} {st.name}: {st.state}, {st.attempts} attempt(s), "
        say.say(text + (f"error {st.error}" if st.error else f"output {out.short(st.output)}"))
    say.say(
        f"    the run {info.state} after {len(info.attempts)} attempts: {out.short(info.output)}"
    )
    names = [st.name for st in steps]
    child = app.get_run(steps[-1].output) if names[-1:] == ["submit:demo.ship"] else None
    o.runs = 2 if child is not None else 1
    o.attempts = len(info.attempts) + (len(child.attempts) if child is not None else 0)
    expected = ["demo.reserve_stock", "demo.charge_card", "submit:demo.ship"]
    o.ok = (
        info.state == "completed"
        and names == expected
        and [st.attempts for st in steps] == [1, 2, 1]
        and child is not None
        and child.parent_run_id == h.run_id
        and child.state == "completed"
        and info.output["charge"] == {"order_id": "order-1001", "charged": 42}
        and elapsed >= SLEEP_SECONDS
    )
    o.happened = (
        f"{len(steps)} steps (the charge retried in place), a {SLEEP_SECONDS:g} s durable sleep, "
        f"a signal, a child run; {len(info.attempts)} attempts, each replaying the steps done"
    )
    if not o.ok:
        o.problems.append(
            f"expected a completed run with steps {expected} (attempts 1, 2, 1) and a completed "
            f"child; got {info.state}, steps {[(n.name, n.attempts) for n in steps]}, "
            f"child {child.state if child is not None else None}"
        )
    return o


def _cancel_leftovers(app: App) -> None:
    """After a scenario failed, cancel what it left behind so the next one starts idle."""
    for state in ("scheduled", "ready", "leased", "running", "retry_wait", "suspended"):
        for r in app.runs(state=state, limit=10_000):
            app.run(r.run_id).cancel()


# -- driver -----------------------------------------------------------------------------------
def run_demo(store: str | None, json_out: bool, keep: bool) -> bool:
    directory = tempfile.mkdtemp(prefix="mainspring-demo-")
    url = _absolute(store) if store else "sqlite:///" + os.path.join(directory, "demo.db")
    path = os.path.join(directory, f"{MODULE}.py")
    with open(path, "w") as f:
        f.write(DEMO_APP.format(store=url, lease=LEASE_SECONDS, sleep=SLEEP_SECONDS))
    outcomes: list[Outcome] = []
    started = time.monotonic()
    narrator = Narrator(quiet=json_out, total=SCENARIOS)
    narrator.say(Text.assemble(("mainspring demo", "bold"), f"  store {url}"))
    mod: ModuleType | None = None
    try:
        mod = _load(path)
        app: App = mod.app
        steps: list[Callable[[], Outcome]] = [
            lambda: retries(app, mod, narrator),
            lambda: crash(app, mod, narrator, directory, url),
            lambda: keyed(app, mod, narrator),
            lambda: schedule(app, mod, narrator),
            lambda: workflow(app, mod, narrator),
        ]
        with narrator:
            for step in steps:
                try:
                    o = step()
                except (DemoFailed, TimeoutError) as exc:
                    o = Outcome(
                        name="(scenario)", happened=f"did not finish: {exc}", problems=[str(exc)]
                    )
                report = app.verify()
                o.verify_ok = bool(report.ok)
                if not report.ok:
                    o.ok = False
                    o.problems.extend(report.problems)
                outcomes.append(o)
                narrator.advance()
        elapsed = time.monotonic() - started
        stats = app.stats()
    finally:
        if mod is not None:
            mod.app.close()
        if not keep and not store:
            shutil.rmtree(directory, ignore_errors=True)
    ok = all(o.ok for o in outcomes)
    if json_out:
        out.emit_json(
            {
                "ok": ok,
                "store": url,
                "seconds": round(elapsed, 2),
                "stats": stats,
                "scenarios": [
                    {
                        "scenario": o.name,
                        "ok": o.ok,
                        "what_happened": o.happened,
                        "runs": o.runs,
                        "attempts": o.attempts,
                        "verify_ok": o.verify_ok,
                        "problems": o.problems,
                    }
                    for o in outcomes
                ],
            }
        )
        return ok
    table = Table(
        title=f"mainspring demo: summary ({elapsed:.1f} s)",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("scenario", no_wrap=True)
    table.add_column("what happened", overflow="fold")
    table.add_column("runs", justify="right")
    table.add_column("attempts", justify="right")
    table.add_column("verify ok", justify="center")
    table.add_column("as promised", justify="center")
    for o in outcomes:
        table.add_row(
            o.name,
            Text(o.happened),
            str(o.runs),
            str(o.attempts),
            Text("yes", style="green") if o.verify_ok else Text("NO", style="bold red"),
            Text("yes", style="green") if o.ok else Text("NO", style="bold red"),
        )
    con = out.console()
    con.print()
    con.print(table)
    for o in outcomes:
        for p in o.problems:
            con.print(Text(f"{o.name}: {p}", style="red"))
    if keep or store:
        con.print(Text(f"explore it: mainspring --store {url} runs   (demo app: {path})"))
    con.print(
        Text(
            "every scenario behaved as promised"
            if ok
            else "some scenarios did not behave as promised",
            style="green" if ok else "bold red",
        )
    )
    return ok
