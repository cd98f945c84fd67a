"""``GET /api/v1/log/stream``: the store's log as Server-Sent Events, following commits of a
worker in another process, resumable with ``Last-Event-ID`` without gap or repeat."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx

from .conftest import Served, stop_process, worker_process

API = "/api/v1"


class Listener:
    """An SSE client in a thread: the events it received, as (id, parsed data)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.url = url
        self.headers = headers or {}
        self.connected = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.connected.wait(10), "the stream did not open"

    def _run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(30.0, read=None)) as client,
            client.stream("GET", self.url, headers=self.headers) as r,
        ):
            assert r.status_code == 200
            self.connected.set()
            event_id = None
            for line in r.iter_lines():
                if self._stop:
                    return
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    assert event_id == data["seq"]
                    self.events.put((event_id, data))

    def take_until(self, done: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Events until ``done(events so far)`` holds."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not done(got):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out with {len(got)} events"
            try:
                got.append(self.events.get(timeout=left)[1])
            except queue.Empty:
                continue
        return got

    def close(self) -> None:
        self._stop = True


def completions(events: list[dict[str, Any]]) -> int:
    return sum(
        1 for e in events if e["type"] == "run.state_changed" and e["data"]["to"] == "completed"
    )


def test_the_stream_follows_another_process_and_resumes_without_gap(served: Served) -> None:
    s = served
    worker = worker_process(s.app.store_url)
    try:
        first = Listener(f"{s.url}{API}/log/stream")
        ids = [
            s.client.post(f"{API}/tasks/svc.add/runs", json={"args": [i, i]}).json()["run_id"]
            for i in range(10)
        ]
        got = first.take_until(lambda evs: completions(evs) >= 10)
        first.close()
        assert {e["run_id"] for e in got if e["type"] == "run.state_changed"} >= set(ids)
        # the stream is the log as stored: same events, same JSON, no gap
        stored = s.app.log(since=got[0]["seq"] - 1, limit=len(got))
        assert [e["seq"] for e in got] == [e.seq for e in stored]
        assert [e["event_id"] for e in got] == [e.event_id for e in stored]
        last = got[-1]["seq"]
        # meanwhile more runs complete; a reconnect with Last-Event-ID continues after last
        more = [
            s.client.post(f"{API}/tasks/svc.add/runs", json={"args": [i, 0]}).json()["run_id"]
            for i in range(5)
        ]
        for run_id in more:
            s.app.run(run_id).result(timeout=30)
        second = Listener(f"{s.url}{API}/log/stream", headers={"Last-Event-ID": str(last)})
        again = second.take_until(lambda evs: completions(evs) >= 5)
        second.close()
        assert again[0]["seq"] == s.app.log(since=last, limit=1)[0].seq
        both = [e["seq"] for e in got + again]
        assert both == sorted(set(both))  # no repeat
        assert both == [e.seq for e in s.app.log(since=got[0]["seq"] - 1, limit=len(both))]
        assert {e["run_id"] for e in again if e["type"] == "run.state_changed"} >= set(more)
        # ?since= replays history from the start
        third = Listener(f"{s.url}{API}/log/stream?since=0")
        history = third.take_until(lambda evs: len(evs) >= 20)
        third.close()
        assert [e["seq"] for e in history] == [e.seq for e in s.app.log(limit=20)]
    finally:
        stop_process(worker)
