"""The web dashboard: a single-page app of plain HTML, CSS and ES modules shipped in the
package (``mainspring/service/static``), so it needs no network at run time.

``/`` and the page paths (``/runs``, ``/runs/{run_id}``, ``/tasks``, ``/workers``,
``/topics``) all answer the same ``index.html``: the page routes on the client. Assets are
under ``/static/``. Nothing here needs a token: the page asks for one when the API answers
401 and keeps it in the browser's localStorage.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Response, Router, get
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"
PAGES = ["/", "/runs", "/runs/{run_id:str}", "/tasks", "/workers", "/topics"]


@cache
def _index() -> bytes:
    return (STATIC / "index.html").read_bytes()


@get(PAGES, include_in_schema=False, sync_to_thread=False)
def _page() -> Response[bytes]:
    # no-cache: a new version of the package must not be hidden behind an old page
    return Response(
        _index(),
        media_type="text/html",
        headers={"Cache-Control": "no-cache"},
    )


def dashboard_router() -> Router:
    """A Litestar router serving the dashboard: its pages and ``/static/`` assets."""
    assets = create_static_files_router(
        path="/static",
        directories=[STATIC],
        include_in_schema=False,
        name="dashboard-static",
    )
    return Router(path="/", route_handlers=[_page, assets], include_in_schema=False)
