"""The tasks the service tests serve: ``declare(app)`` puts them on any App, and ``app``
(on ``MAINSPRING_STORE``) is what a worker in another process runs
(``python -c 'import svc_tasks; svc_tasks.app.run_worker()'`` from this directory)."""

from __future__ import annotations

from typing import Any

import mainspring as ms


def declare(app: ms.App) -> dict[str, Any]:
    """Declare the test tasks on ``app``; the task functions by short name."""

    @app.task(name="svc.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="svc.boom")
    def boom() -> None:
        raise ms.Fail("no")

    @app.task(name="svc.pause")
    def pause() -> None:
        raise ms.Suspend("operator check")

    @app.workflow(name="svc.approve")
    def approve(order: int) -> str:
        answer = ms.wait_for("approval", timeout=60)
        return f"order {order}: {answer}"

    @app.subscriber("orders.*", name="svc.billing")
    def billing(msg: ms.Message) -> str:
        return f"billed {msg.payload}"

    return {"add": add, "boom": boom, "pause": pause, "approve": approve, "billing": billing}


app = ms.App()
declare(app)
