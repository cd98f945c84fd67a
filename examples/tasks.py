"""The tasks of the README's tour.

Run a worker for them from the root of the repository::

    export MAINSPRING_STORE=sqlite:///tour.db
    mainspring worker examples.tasks:app --burst

and submit from Python with ``from examples.tasks import add, charge, rebalance, report``.

Task names default to ``module.qualname`` of the handler, so these are
``examples.tasks.add``, ``examples.tasks.charge``, ... whether this module is imported by a
producer or by ``mainspring worker examples.tasks:app``: both see the same names.
"""

from __future__ import annotations

import time

import mainspring as ms

# No I/O here: the store is opened on first use (a submit, a query, a worker). Without an
# argument it is MAINSPRING_STORE, else sqlite:///mainspring.db in the current directory.
app = ms.App()


@app.task
def add(x: int, y: int) -> int:
    """A plain task: one attempt (the default max_attempts=1), no retry."""
    return x + y


@app.task(max_attempts=3, backoff=ms.Backoff.fixed(0.5))
def charge(order_id: int) -> str:
    """A task with retries: its first attempt fails, the second succeeds.

    Any exception other than ms.Fail / ms.Suspend ends the attempt as ``retryable``; the
    run waits 0.5 s in ``retry_wait`` and is tried again, up to 3 attempts in all. Every
    attempt sees the same run id: use it as the idempotency key of outside effects.
    """
    ctx = ms.context()
    if ctx.attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return f"order {order_id} charged on attempt {ctx.attempt} (key {ctx.run_id})"


@app.task(concurrency_key="account:{account}", concurrency_limit=1)
def rebalance(account: str) -> str:
    """A task with a concurrency key: at most one run per account at a time, across every
    worker process sharing the store (the key is filled from the ``account`` argument)."""
    time.sleep(0.2)
    return f"rebalanced {account}"


@app.task
def report() -> str:
    """Submitted on a cron schedule: ``report.schedule(cron="0 9 * * 1-5", tz="Europe/Paris")``."""
    return "report sent"
