"""Screenshots of the dashboard for docs/service.md.

Builds a demo store in a temporary directory (half an hour of varied runs: completed and
failed ones minute by minute, a cron schedule, a workflow waiting for a signal, messages
with their receipts, a run still running on a live worker), serves it, and saves PNGs of
every page, on a desktop screen and on a phone-width one, into docs/img/. Needs the
``server`` and ``dev`` extras and Debian's ``chromium``::

    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mainspring as ms
from mainspring.service.server import BackgroundServer, create_app
from mainspring.testing import ManualClock

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

ROOT = Path(__file__).resolve().parent.parent
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


def build(store: str) -> tuple[ms.App, dict[str, str], threading.Event]:
    """A demo store: the App (its worker still to start), notable run ids, and an event
    that lets the long-running task finish."""
    rng = random.Random(7)
    # a manual clock lets half an hour of history be written in a few seconds
    clock = ManualClock(start=datetime.now(UTC) - timedelta(minutes=29))
    app = ms.App(store, clock=clock, lease_seconds=3600)
    release = threading.Event()

    @app.task(name="shop.charge")
    def charge(order: int) -> str:
        clock.advance(rng.uniform(0.05, 0.6))  # simulated work, on the demo's clock
        if order % 9 == 0:
            raise ConnectionError(f"payment gateway timed out for order {order}")
        return f"order {order} charged"

    @app.task(name="shop.report")
    def report() -> str:
        return "report sent"

    @app.task(name="shop.reindex")
    def reindex() -> str:
        release.wait(120)
        return "reindexed"

    @app.step(name="shop.reserve")
    def reserve(order: int) -> dict[str, Any]:
        clock.advance(1.5)
        return {"order": order, "reserved": True}

    @app.workflow(name="shop.fulfil")
    def fulfil(order: int) -> str:
        reserve(order)
        approval = ms.wait_for("approval", timeout=timedelta(days=1))
        return f"shipped ({approval})"

    @app.subscriber("orders.*", name="shop.billing")
    def billing(msg: ms.Message) -> str:
        return f"billed order {msg.payload['order']}"

    @app.subscriber("orders.*", name="shop.audit")
    def audit(msg: ms.Message) -> None:
        if msg.payload["order"] == 1003:
            raise ms.Fail("audit rejected the order")

    runs: dict[str, str] = {}
    order = 100
    with app.worker(concurrency=1, grace_seconds=1.0) as w:
        for minute in range(29):
            for _ in range(rng.randint(1, 7)):
                order += 1
                charge.submit(order)
            clock.advance(rng.uniform(0.2, 3.0))  # how long runs wait for the worker
            w.run_until_idle(30)
            clock.advance(60 - clock.now() % 60 + minute % 3)
        report.schedule(cron="0 9 * * 1-5", tz="Europe/Paris")
        runs["waiting"] = fulfil.submit(1001).run_id
        for n in (1001, 1002, 1003):
            app.publish("orders.created", {"order": n, "total": 10 * n})
        app.publish("orders.shipped", {"order": 1000})
        w.run_until_idle(30)
    runs["failed"] = app.runs(state="failed", task="shop.charge")[0].run_id
    runs["later"] = charge.with_options(delay=3600).submit(2000).run_id
    canceled = charge.with_options(delay=60).submit(2001)
    canceled.cancel()
    runs["running"] = reindex.submit().run_id
    return app, runs, release


def shoot(url: str, runs: dict[str, str], out: Path) -> list[Path]:
    """Screenshots of every page; the paths written."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    pages = [
        ("overview", "/"),
        ("runs", "/runs?state=failed"),
        ("run-workflow", f"/runs/{runs['waiting']}"),
        ("run-failed", f"/runs/{runs['failed']}"),
        ("tasks", "/tasks"),
        ("workers", "/workers"),
        ("topics", "/topics?topic=orders.created"),
    ]
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args)
        for screen, size, names in (
            ("desktop", DESKTOP, [p[0] for p in pages]),
            ("phone", PHONE, ["overview", "run-workflow"]),
        ):
            ctx = browser.new_context(viewport=size, base_url=url, color_scheme="light")
            page = ctx.new_page()
            for name, path in pages:
                if name not in names:
                    continue
                page.goto(path)
                page.locator("main h1").wait_for()
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)  # the charts and the live status settle
                target = out / f"dashboard-{name}{'' if screen == 'desktop' else '-phone'}.png"
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            ctx.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        app, runs, release = build(f"sqlite:///{tmp}/demo.db")
        # a live worker, busy with one run, for the workers page
        with app.worker(concurrency=2, grace_seconds=0.5):
            server = BackgroundServer(create_app(app)).start()
            try:
                for path in shoot(server.url, runs, options.out):
                    print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            finally:
                release.set()
                server.stop()
        app.close()


if __name__ == "__main__":
    main()
