"""The dashboard in a real Chromium (tests/service/browser.py), over a served store of
each kind: every page renders what the store holds, a run's page shows its timeline from
the log, the page follows the live log stream, an operator cancels a run from the page
and a viewer's attempt is refused with a message, and it fits a phone-width screen. The
static pages and assets are served from the package, with nothing from another origin."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import mainspring as ms
from mainspring.service._auth import Role
from mainspring.service.dashboard import STATIC
from mainspring.service.server import BackgroundServer, create_app

from .browser import PageErrors, launched, new_page, require_chromium

pytestmark = pytest.mark.timeout(120)

PAGES = ["/", "/runs", "/tasks", "/workers", "/topics"]


@dataclass
class Served:
    """A served store with a few runs, and their ids by what they are."""

    app: ms.App
    url: str
    runs: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, token: str | None = None) -> Any:
        req = urllib.request.Request(self.url + "/api/v1" + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)


def _declare(app: ms.App) -> dict[str, Any]:
    @app.task(name="demo.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="demo.boom")
    def boom() -> None:
        raise ValueError("the gateway said no")

    @app.step(name="demo.fetch")
    def fetch(order: int) -> dict[str, int]:
        return {"order": order}

    @app.workflow(name="demo.approve")
    def approve(order: int) -> str:
        fetch(order)
        ms.wait_for("approval")
        return "approved"

    @app.subscriber("orders.*", name="demo.billing")
    def billing(msg: ms.Message) -> str:
        return f"billed {msg.payload['order']}"

    return {"add": add, "boom": boom, "approve": approve}


def _serve(store_url: str, tokens: dict[str, Role] | None = None) -> Iterator[Served]:
    app = ms.App(store_url, lease_seconds=5.0)
    tasks = _declare(app)
    runs = {
        "completed": tasks["add"].submit(2, 3).run_id,
        "failed": tasks["boom"].submit().run_id,
        "waiting": tasks["approve"].submit(7).run_id,
    }
    app.publish("orders.created", {"order": 7})
    with app.worker(concurrency=4, grace_seconds=1.0) as w:
        w.run_until_idle(30)
    # submitted after the worker stopped: it stays scheduled (an hour away) to be canceled
    runs["scheduled"] = tasks["add"].with_options(delay=3600).submit(1, 1).run_id
    server = BackgroundServer(create_app(app, tokens)).start()
    try:
        yield Served(app, server.url, runs)
    finally:
        server.stop()
        app.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_chromium()
    with launched() as b:
        yield b


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    yield from _serve(store_url)


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[tuple[Any, PageErrors]]:
    page, errors = new_page(browser, served.url)
    yield page, errors
    page.context.close()


def test_static_pages_and_assets_come_from_the_package(served: Served) -> None:
    for path in [*PAGES, f"/runs/{served.runs['completed']}"]:
        with urllib.request.urlopen(served.url + path, timeout=10) as res:
            assert res.headers["Content-Type"].startswith("text/html")
            assert b'src="/static/js/main.js"' in res.read()
    for asset in sorted(STATIC.rglob("*")):
        if asset.is_file():
            rel = asset.relative_to(STATIC).as_posix()
            with urllib.request.urlopen(f"{served.url}/static/{rel}", timeout=10) as res:
                assert res.read() == asset.read_bytes()
            # every asset is local: nothing is loaded from a CDN
            assert b"http://" not in asset.read_bytes().replace(b"http://www.w3.org", b"")
            assert b"https://" not in asset.read_bytes()


def test_every_page_renders_the_store(page: tuple[Any, PageErrors], served: Served) -> None:
    p, errors = page
    origins: set[str] = set()
    p.on("request", lambda r: origins.add(r.url.split("/", 3)[2] if "://" in r.url else r.url))

    p.goto("/")
    p.get_by_role("heading", name="Overview").wait_for()
    p.locator(".card.s-completed .n", has_text="2").wait_for()  # the add and the delivery
    p.locator(".card.s-failed .n", has_text="1").wait_for()
    p.locator(".card.s-suspended .n", has_text="1").wait_for()
    p.locator("svg.chart rect.s-completed").first.wait_for()  # throughput of the last minutes
    p.get_by_role("link", name="default").wait_for()  # the queues table

    p.get_by_role("link", name="Runs", exact=True).click()
    p.wait_for_url("**/runs")
    for run_id in served.runs.values():
        p.locator(f'tr[data-run-id="{run_id}"]').wait_for()
    p.get_by_label("State").select_option("failed")
    p.wait_for_url("**/runs?state=failed")
    p.locator(f'tr[data-run-id="{served.runs["completed"]}"]').wait_for(state="detached")
    # (the table is emptied, then filled: wait for the filtered page before counting it)
    p.locator(
        f'tr[data-run-id="{served.runs["failed"]}"]', has_text="the gateway said no"
    ).wait_for()
    assert p.locator("tbody tr").count() == 1

    p.goto("/tasks")
    for name in ("demo.add", "demo.boom", "demo.approve", "demo.billing"):
        p.get_by_role("cell", name=name, exact=True).first.wait_for()

    p.goto("/workers")
    p.get_by_text("0 live workers").wait_for()  # the seeding worker has left

    p.goto("/topics")
    p.get_by_role("link", name="orders.created").click()
    p.wait_for_url("**/topics?topic=orders.created")
    row = p.locator("tbody tr").first
    row.get_by_text("delivered").wait_for()
    row.get_by_text("demo.billing").wait_for()

    assert origins == {served.url.split("/", 3)[2]}  # nothing from anywhere else
    assert errors.errors == []


def test_a_runs_page_shows_its_timeline_and_why(
    page: tuple[Any, PageErrors], served: Served
) -> None:
    p, errors = page
    p.goto(f"/runs/{served.runs['waiting']}")
    p.get_by_role("heading", name="demo.approve").wait_for()
    timeline = p.locator("ol.timeline")
    for kind in (
        "run.created",
        "lease.acquired",
        "attempt.started",
        "step.completed",
        "wait.started",
    ):
        timeline.locator(f'li[data-type="{kind}"]').first.wait_for()
    assert "demo.fetch" in timeline.locator('li[data-type="step.completed"]').inner_text()
    for lane in ("state", "lease", "attempt", "step", "wait"):
        p.locator(f'.lanes [data-lane="{lane}"] .bar').first.wait_for()
    p.locator(".why").get_by_text("approval").wait_for()  # waiting for the signal
    assert p.get_by_role("button", name="Resume").is_disabled() is False

    p.goto(f"/runs/{served.runs['failed']}")
    p.locator('li[data-type="attempt.finished"]', has_text="the gateway said no").wait_for()
    p.get_by_role("cell", name="ValueError: the gateway said no").wait_for()
    assert p.get_by_role("button", name="Cancel").is_disabled()

    # a delivery run's timeline has its receipt, linking to the topic
    delivery = served.app.runs(task="demo.billing")[0].run_id
    p.goto(f"/runs/{delivery}")
    p.locator('li[data-type="receipt.recorded"]').get_by_role(
        "link", name="orders.created"
    ).wait_for()
    p.locator('.lanes [data-lane="mark"] .dot').first.wait_for()
    assert errors.errors == []


def test_the_page_follows_the_live_log(page: tuple[Any, PageErrors], served: Served) -> None:
    p, errors = page
    p.goto("/runs")
    p.locator(f'tr[data-run-id="{served.runs["completed"]}"]').wait_for()
    p.locator("#live[data-state=live]").wait_for()
    new = served.app.submit("demo.add", [40, 2]).run_id
    row = p.locator(f'tr[data-run-id="{new}"]')
    row.wait_for()  # appeared without a reload
    assert "ready" in row.inner_text()

    p.get_by_role("link", name=new[:8] + "…" + new[-4:]).click()
    p.get_by_role("heading", name="demo.add").locator(".badge", has_text="ready").wait_for()
    with served.app.worker(concurrency=1) as w:
        w.run_until_idle(30)
        # its page moves on by itself too, and the worker shows while it is alive
        p.get_by_role("heading", name="demo.add").locator(".badge", has_text="completed").wait_for()
        p.locator('li[data-type="attempt.finished"]').wait_for()
        p.get_by_role("link", name="Workers").click()
        p.get_by_text("1 live worker").wait_for()
    assert errors.errors == []


def test_an_operator_cancels_a_run_from_the_page(
    page: tuple[Any, PageErrors], served: Served
) -> None:
    p, errors = page
    run_id = served.runs["scheduled"]
    p.goto(f"/runs/{run_id}")
    p.get_by_role("heading", name="demo.add").locator(".badge", has_text="scheduled").wait_for()
    p.get_by_role("button", name="Cancel").click()
    p.get_by_role("alert").get_by_text("Run canceled.").wait_for()
    p.get_by_role("heading", name="demo.add").locator(".badge", has_text="canceled").wait_for()
    assert served.get(f"/runs/{run_id}")["state"] == "canceled"
    assert p.get_by_role("button", name="Cancel").is_disabled()

    # a rerun opens the new run's page
    p.get_by_role("button", name="Rerun").click()
    p.wait_for_url(lambda url: run_id not in url and "/runs/" in url)
    new_id = p.url.rsplit("/", 1)[1]
    assert served.get(f"/runs/{new_id}")["rerun_of"] == run_id
    assert errors.errors == []


def test_with_tokens_the_page_asks_and_a_viewer_cannot_cancel(browser: Any, store_url: str) -> None:
    for served in _serve(store_url, tokens={"v-token": "viewer", "o-token": "operator"}):
        p, errors = new_page(browser, served.url)
        run_id = served.runs["scheduled"]
        p.goto(f"/runs/{run_id}")
        dialog = p.get_by_role("dialog", name="Access token")
        dialog.get_by_label("Token").fill("v-token")
        dialog.get_by_role("button", name="Use token").click()
        p.get_by_role("heading", name="demo.add").wait_for()
        p.locator("#live[data-state=live]").wait_for()  # the stream takes ?token=
        p.get_by_role("button", name="Cancel").click()
        p.get_by_role("alert").get_by_text("Not allowed").wait_for()
        assert served.get(f"/runs/{run_id}", token="v-token")["state"] == "scheduled"
        # the token is kept: a new page of the same browser context needs no prompt
        p2 = p.context.new_page()
        p2.goto(served.url + "/runs")
        p2.locator(f'tr[data-run-id="{run_id}"]').wait_for()
        assert not p2.get_by_role("dialog").is_visible()
        assert errors.errors == []
        p.context.close()


def test_it_fits_a_phone_width_screen(browser: Any, served: Served) -> None:
    p, errors = new_page(browser, served.url, viewport={"width": 390, "height": 844})
    for path in [*PAGES, f"/runs/{served.runs['waiting']}"]:
        p.goto(path)
        p.locator("main h1").wait_for()
        p.wait_for_load_state("networkidle")
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px screen"
    p.goto("/runs")
    # tables become labelled cards: each cell says its column
    cell = p.locator(f'tr[data-run-id="{served.runs["failed"]}"] td[data-label="Task"]')
    assert cell.inner_text() == "demo.boom"
    assert errors.errors == []
    p.context.close()


def test_runs_are_paged_with_the_apis_cursor(page: tuple[Any, PageErrors], served: Served) -> None:
    p, errors = page
    served.app.submit_many("demo.add", [((i, 1), {}) for i in range(26)])
    total = len(served.app.runs(limit=1000))
    p.goto("/runs")
    p.locator("tbody tr").nth(24).wait_for()
    assert p.locator("tbody tr").count() == 25
    first_page = p.locator("tbody tr").first.get_attribute("data-run-id")
    assert first_page == served.app.runs(limit=1, order="desc")[0].run_id  # the latest first
    p.get_by_role("link", name="Next →").click()
    p.wait_for_url("**/runs?cursor=*")
    p.get_by_role("link", name="← Previous").wait_for()
    assert p.locator("tbody tr").count() == total - 25
    assert p.get_by_role("link", name="Next →").count() == 0
    p.get_by_role("link", name="← Previous").click()
    p.locator(f'tr[data-run-id="{first_page}"]').wait_for()
    assert errors.errors == []
