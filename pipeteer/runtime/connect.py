"""`pipeteer.connect(app, url)`: a workflow's queues on a backend, for scripts and services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeteer.plan import INPUT, OUTPUT_QUEUE, Plan
from pipeteer.queues.backends import backend_from_url
from pipeteer.queues.base import NO_HOOKS, QueueHooks
from pipeteer.runtime.app import App, load_app
from pipeteer.spec import Workflow
from pipeteer.wiring import BackendQueues, StageHooks, make_queues


def connect(
    app: App | Workflow[Any, Any] | str,
    url: str | None = None,
    *,
    hooks: Sequence[StageHooks] = (),
    env: Mapping[str, str] | None = None,
    queue_hooks: QueueHooks = NO_HOOKS,
) -> BackendQueues:
    """The workflow's queues on the backend `url` names (default: `$PIPETEER_BACKEND`, else `sqlite:///queues.db`).

    `hooks` observe the stages' moves (metrics, locks); `queue_hooks` are given to the backend's queues
    when they are made (a service's retry policy and dead-letter count).

    >>> import asyncio
    >>> from pipeteer import Pipeline, Workflow
    >>> wf = Workflow(int, str, pipelines={"fmt": Pipeline(int, str)})
    >>> queues = connect(wf, "memory://")
    >>> asyncio.run(queues.Qin.push("1", 42))
    >>> asyncio.run(queues["fmt"].Qin.read())
    ('1', 42)
    """
    obj = load_app(app)
    wf = obj.workflow if isinstance(obj, App) else obj
    plan = Plan.of(wf)
    # bound: Kafka names consumer groups and side topics by the stage reading each queue
    backend = backend_from_url(url, env=env, plan=plan, hooks=queue_hooks)
    Qin = backend.make_queue(wf.Tin, INPUT)
    Qout = backend.make_queue(wf.Tout, OUTPUT_QUEUE)
    # `make_queues` finds the backend by its `make_queue` (the queues are built with it)
    queues: BackendQueues = make_queues(Qin, Qout, wf, backend.make_queue, hooks=hooks, plan=plan)
    return queues
