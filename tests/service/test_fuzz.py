"""Property-based fuzzing of the OpenAPI document (schemathesis, offline: the document is
read from the served store): every operation gets generated requests, valid and not, and
no response may be a 5xx, and each must match what the document says (status, content
type, body schema). The stream (``/log/stream``) never ends, so it is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Served, serve  # noqa: E402

#: what the fuzzing did (the run's summary prints it: conftest.pytest_terminal_summary)
TRIED: dict[str, int] = {"requests": 0, "5xx": 0}
EXAMPLES = 40  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One served SQLite store for the whole module, with a few runs in it."""
    path = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    for s in serve(f"sqlite:///{path}"):
        s.app.submit_many("svc.add", [((i, i), {}) for i in range(5)])
        s.app.publish("orders.created", {"order": 1})
        yield s


MODES = ("positive", "negative")


@pytest.mark.parametrize("mode", MODES)
def test_no_5xx_and_the_documented_shapes(fuzzed: Served, mode: str) -> None:
    """Every operation but the stream, with requests that fit the document (positive) and
    requests that do not (negative: those must be answered 4xx, never 5xx)."""
    doc = fuzzed.client.get("/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    generation = GenerationMode(mode)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/log/stream"):
            continue
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            phases=[Phase.generate],
        )
        @given(case=operation.as_strategy(generation_mode=generation))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=fuzzed.url)
            TRIED["requests"] += 1
            if response.status_code >= 500:
                TRIED["5xx"] += 1
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
                return
            if generation is GenerationMode.NEGATIVE:
                assert 400 <= response.status_code < 500 or response.status_code < 300
                body = response.json()
                if response.status_code >= 400:
                    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
                return
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as exc:
                failures.append(f"{case.method} {case.formatted_path}: {exc}"[:500])

        try:
            fuzz()
        except Unsatisfiable:  # nothing about it can be made invalid (no parameters, no body)
            assert generation is GenerationMode.NEGATIVE
    assert operations >= 20
    assert not failures, "\n".join(failures[:20])
