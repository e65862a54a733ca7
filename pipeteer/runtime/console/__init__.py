"""The built-in review console of `pipeteer run`: every human stage's pending tasks, worked in a browser.

`/` lists the stages with their progress and the team's numbers (live); `/console/?stage=NAME`
is a stage's desk: the pending tasks, oldest first, a page at a time (search by id, filter by
age), and one task at a time, shown from its state with the actions its output type calls for
(see `forms`, and `pipeteer.annotate` for points, boxes and polygons drawn on an image).
Keyboard: `a` approve, `r` reject, `n` next, `u` undo, `?` every key. A task opened is locked to
its reviewer and a decision waits out an undo window before it is applied (see `desk`); the
same locks hold on every route that completes a task (see `guard`). The JSON API under
`/console/api/` is what the page uses, and works for scripts as well (`?stage=` and `?id=` in
the query, so any id works); see `routes`.

Every request costs a page, not the whole stage: listings, counts and "next" ask the backend
for one page of pending items (`BaseQueue.page`, `count`) and the locks of that page only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipeteer import settings
from pipeteer.errors import InexistentItem, PipeteerError, TaskLocked, UnreadableRecord
from pipeteer.queues.base import BaseQueue
from pipeteer.queues.ledger import Decided
from pipeteer.runtime.console.desk import Decision, Desk, candidates
from pipeteer.runtime.console.forms import actions_for, show
from pipeteer.runtime.console.guard import LockGuard, reviewer
from pipeteer.runtime.console.peers import Peers, parse_peers
from pipeteer.runtime.console.stats import HOUR, WEEK, ReviewerStats, StageProgress, day_start, reviewers
from pipeteer.runtime.metrics import audit_event, current_decision
from pipeteer.runtime.security import current_reviewer
from pipeteer.spec.stages import OUTPUT

log = logging.getLogger("pipeteer.console")

HERE = Path(__file__).parent
PAGE_SIZE = 50
LIVE_INTERVAL = 1.0
NEXT_PAGE = 100
"""Tasks looked at per page when finding the next one for a reviewer (locked ones are passed over)."""
NEXT_PAGES = 10
PEER_DEPTH = 10_000
"""How deep a listing merged across instances reaches (each sends its tasks up to the page's end)."""
RECALLS_KEPT = 20
"""Applied decisions per reviewer this process can still take back (while the item waits downstream)."""
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False
)
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "annotate.css": "text/css; charset=utf-8",
    "annotate.js": "text/javascript; charset=utf-8",
}


def duration(seconds: float) -> str:
    """A wait in words a person reads at a glance.

    >>> duration(42), duration(600), duration(7200), duration(3 * 86400)
    ('42 s', '10 min', '2.0 h', '3.0 days')
    """
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


TEMPLATES.filters["duration"] = duration


@dataclass(frozen=True)
class ConsoleSettings:
    """`lease_seconds`: how long an opened task stays locked to its reviewer; `undo_seconds`: the undo window;
    `peers`: the other instances of the same human stages (see `peers`), from `PIPETEER_CONSOLE_PEERS`."""

    lease_seconds: float = 300.0
    undo_seconds: float = 5.0
    peers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConsoleSettings:
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(peers=parse_peers(settings.CONSOLE_PEERS.get(env) or ""), **given)


def render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**context))


def not_pending(stage: str, id: str) -> HTTPException:
    return HTTPException(404, detail=f"task {id[:100]!r} of {stage} is not pending (unknown, or already completed)")


def unreadable_task(stage: str, id: str) -> str:
    """What the console answers for a task this version cannot read."""
    return (f"task {id[:100]!r} of {stage} was written by another version of the workflow and cannot be read "
            "by this one yet: it is kept (not lost), and a version that can read it will serve it")


def locked(e: TaskLocked) -> HTTPException:
    return HTTPException(409, detail=str(e))


@dataclass(frozen=True)
class Applied:
    """A decision this process applied, kept so its reviewer can take it back while the item waits downstream."""

    stage: str
    id: str
    state: Any
    target: str
    label: str
    at: float


class Console:
    """The console of one stage service: its human stages' desks and what the routes ask of them."""

    def __init__(self, service: Any, guard: LockGuard, settings: ConsoleSettings = ConsoleSettings()) -> None:
        self.service = service
        self.app_name: str = service.app.name
        self.settings = settings
        self.human: list[str] = [s for s in service.stages if s in service.web]
        self.locks = service.backend.locks()
        self.ledger = service.backend.ledger()
        self.guard = guard
        self.desks = {s: Desk(s, self.locks, settings.lease_seconds, settings.undo_seconds) for s in self.human}
        self.applied: dict[str, deque[Applied]] = {}
        self.states: dict[tuple[str, str], Any] = {}
        """(stage, id) -> the state a waiting decision was made on (what taking it back restores)."""
        self.closing = asyncio.Event()
        self._applier: asyncio.Task[None] | None = None
        # One snapshot per stage (None: all stages) shared by every live view, however many are open
        self._snapshots: dict[str | None, tuple[float, Any]] = {}
        self.peers = Peers(settings.peers, lambda name: service.security.session_cookie(name, seconds=60))

    # --- a stage's queues and types ---

    def _raw(self, stage: str) -> BaseQueue[Any]:
        return self.service.queues.stage_queue(stage)

    def _qout(self, stage: str) -> Any:
        return self.service.app.stage_queues(self.service.queues, stage)["Qout"]

    def desk(self, stage: str | None) -> Desk:
        if stage not in self.desks:
            raise HTTPException(404, detail=f"no human stage {str(stage)[:100]!r} here (stages: {', '.join(self.human)})")
        return self.desks[stage]

    def reasons(self, stage: str) -> tuple[str, ...]:
        """The reject reasons the app declares for the stage (the reviewer may also write their own)."""
        return tuple(self.service.app.reasons.get(stage, ()))

    # --- listings: one page at a time ---

    def local_page(self, stage: str, offset: int, limit: int, match: str | None = None,
                   older_than: float | None = None) -> tuple[int, list[dict[str, Any]]]:
        """This instance's pending tasks of `stage`: how many match, and one page of them, oldest first,
        each with its lock (holder, until, decided) and whether this version can read it."""
        raw, now = self._raw(stage), time.time()
        total = raw.count(match=match, older_than=older_than, now=now)
        rows = raw.page(offset, limit, match=match, older_than=older_than, now=now)
        locks = self.desks[stage].holders([id for id, _ in rows], now)
        unreadable = raw.unreadable([id for id, _ in rows])
        items = []
        for id, since in rows:
            lock = locks.get(id)
            item: dict[str, Any] = {"id": id, "since": since, "holder": lock.reviewer if lock else None,
                                    "until": lock.until if lock else None, "decided": bool(lock and lock.decided)}
            if id in unreadable:
                item["unreadable"] = True
            items.append(item)
        return total, items

    async def page(self, stage: str, offset: int = 0, limit: int = PAGE_SIZE, match: str | None = None,
                   older_than: float | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Every instance's pending tasks of `stage` (this one's and its peers'): a page, oldest first, and the total."""
        if not self.peers:
            return self.local_page(stage, offset, limit, match, older_than)
        if offset + limit > PEER_DEPTH:  # each instance would send all its tasks up to the page
            raise HTTPException(422, detail=f"with several instances, pages reach the first {PEER_DEPTH} tasks: "
                                            "narrow the listing with a search or an age filter")
        total, items = self.local_page(stage, 0, offset + limit, match, older_than)
        params: dict[str, Any] = {"stage": stage, "limit": offset + limit}
        if match:
            params["match"] = match
        if older_than is not None:
            params["older_than"] = older_than
        for answer in await self.peers.ask_all("GET", "/console/api/held", params, reviewer()):
            total += int(answer.get("total", 0))
            items += answer.get("items", [])
        items.sort(key=lambda i: i["since"])
        return total, items[offset: offset + limit]

    async def counts(self) -> list[dict[str, Any]]:
        """Every stage of this service: pending, and for a human stage how many are taken and its progress."""
        out = []
        now = time.time()
        today = day_start(now)
        for s in self.service.stages:
            if s not in self.desks:
                out.append({"stage": s, "human": False, "pending": self._raw(s).count(), "taken": 0})
                continue
            raw = self._raw(s)
            pending, taken, backlog = raw.count(), self.locks.count(s, now), raw.backlog()
            if self.peers:
                for answer in await self.peers.ask_all("GET", "/console/api/held", {"stage": s, "limit": 1}, reviewer()):
                    pending += int(answer.get("total", 0))
                    taken += int(answer.get("taken", 0))
                    backlog += int(answer.get("backlog", 0))
            pending += backlog
            p = StageProgress.of(s, pending, self.ledger.count(s, today, now), self.ledger.count(s, now - HOUR, now))
            out.append({"stage": s, "human": True, "pending": pending, "listed": pending - backlog, "taken": taken,
                        "done_today": p.done_today,
                        "rate_per_hour": p.rate_per_hour, "empty_in": p.empty_in})
        return out

    def team(self, stage: str | None = None) -> list[ReviewerStats]:
        now = time.time()
        return reviewers(self.ledger.between(now - WEEK, now, stage), now)

    # --- one task ---

    async def detail(self, stage: str, id: str) -> dict[str, Any]:
        try:
            state = await self._raw(stage).read(id)
        except InexistentItem:
            raise not_pending(stage, id) from None
        except UnreadableRecord:
            raise HTTPException(409, detail=unreadable_task(stage, id)) from None
        lock = self.desks[stage].holder(id, time.time())
        return {
            "id": id,
            "stage": stage,
            "fields": [asdict(f) for f in show(state)],
            "holder": lock.reviewer if lock else None,
            "until": lock.until if lock else None,
            "actions": asdict(actions_for(self.service.app.output_type(stage))),
        }

    async def open_here(self, stage: str, id: str) -> dict[str, Any]:
        """Lock the task to the reviewer and give its detail; 409 naming who has it otherwise."""
        out = await self.detail(stage, id)
        try:
            lock = self.desks[stage].lease(id, reviewer(), time.time())
        except TaskLocked as e:
            raise locked(e) from None
        out["holder"], out["until"] = lock.reviewer, lock.until
        return out

    async def decide_here(self, stage: str, id: str, value: Any, label: str, reason: str | None,
                          comment: str | None) -> dict[str, Any]:
        raw = self._raw(stage)
        try:
            state = await raw.read(id)
        except InexistentItem:
            raise not_pending(stage, id) from None
        except UnreadableRecord:
            raise HTTPException(409, detail=unreadable_task(stage, id)) from None
        desk = self.desks[stage]
        try:
            d = desk.decide(id, reviewer(), value, label, time.time(), reason=reason, comment=comment)
        except TaskLocked as e:
            raise locked(e) from None
        if self.recalls:
            self.states[(stage, id)] = state
        if self.settings.undo_seconds <= 0 and desk.take(id) is not None:
            outcome = await self.apply(stage, d)
            if outcome != "applied":
                raise HTTPException(409, detail=f"task {id[:100]!r}: {outcome}")
            return {"id": id, "state": "applied", "label": label}
        return {"id": id, "state": "waiting", "label": label, "undo_seconds": self.settings.undo_seconds}

    # --- applying decisions ---

    @property
    def recalls(self) -> bool:
        """Whether an applied decision can be taken back while its item waits downstream: on a backend
        whose moves between queues are atomic here (SQLite, memory); on Kafka the item belongs to the
        instance owning its partition downstream, so only the undo window applies."""
        return bool(self.service.backend.moves_back)

    async def apply(self, stage: str, d: Decision) -> str:
        """Push one decision through the stage's `Qout` (the atomic move); 'applied' or why not."""
        comment = d.comment
        token = current_reviewer.set(d.reviewer)
        what = current_decision.set({"decision": d.label, "reason": d.reason, "comment": comment, "via": "console"})
        desk = self.desks[stage]
        state = self.states.pop((stage, d.id), None)
        try:
            await self._qout(stage).push(d.id, d.value)
        except InexistentItem:
            log.warning("stage %r: %s's decision on %r not applied: the task was completed elsewhere", stage, d.reviewer, d.id)
            desk.done(d.id)
            return "completed elsewhere"
        except PipeteerError as e:
            log.error("stage %r: %s's decision on %r failed: %s", stage, d.reviewer, d.id, e)
            self.locks.release(stage, d.id, d.reviewer)
            return f"failed: {e}"
        finally:
            current_decision.reset(what)
            current_reviewer.reset(token)
        desk.done(d.id)
        now = time.time()
        reason_label = d.reason if d.reason in self.reasons(stage) else ("other" if d.reason or comment else "")
        self.service.progress.of(stage).decisions(d.label, reason_label).inc()
        self.ledger.record(Decided(stage, d.id, d.reviewer, d.label, now, d.seconds, d.reason or comment))
        target = self.guard.targets.pop((stage, d.id), None)
        if state is not None and target is not None:
            kept = self.applied.setdefault(d.reviewer, deque(maxlen=RECALLS_KEPT))
            kept.append(Applied(stage, d.id, state, target, d.label, now))
        return "applied"

    async def recall(self, stage: str, id: str) -> dict[str, Any]:
        """Take back an applied decision of this reviewer while its item still waits downstream, untouched:
        in the workflow's output, or in a human stage where nobody holds it. The task is theirs again."""
        me = reviewer()
        kept = self.applied.get(me, deque())
        found = next((a for a in reversed(kept) if a.stage == stage and a.id == id), None)
        if found is None:
            raise HTTPException(409, detail=f"nothing to take back on task {id[:100]!r}: no decision of yours on it "
                                             "applied recently by this instance")
        if found.target == OUTPUT:
            dst: BaseQueue[Any] = self.service.queues.Qout
        elif found.target in self.desks:
            lock = self.locks.get(found.target, id, time.time())
            if lock is not None:
                raise HTTPException(409, detail=f"task {id[:100]!r} is being worked on in {found.target} by "
                                                 f"{lock.reviewer}: it cannot be taken back")
            dst = self._raw(found.target)
        else:
            raise HTTPException(409, detail=f"task {id[:100]!r} went on to {found.target}, an automatic stage "
                                             "that may be working on it: it cannot be taken back")
        try:
            await dst.move(id, self._raw(stage), found.state)
        except InexistentItem:
            raise HTTPException(409, detail=f"task {id[:100]!r} has left {found.target}: it cannot be taken "
                                             "back any more") from None
        kept.remove(found)
        now = time.time()
        self.desks[stage].lease(id, me, now)
        self.service.progress.of(stage).decisions("undone", "").inc()
        self.ledger.record(Decided(stage, id, me, "undone", now, None, f"took back {found.label}"))
        audit_event("undone", stage, id, me, decision=found.label, was="applied", back_from=found.target)
        return {"id": id, "state": "undone", "label": found.label}

    def recent(self, stage: str) -> list[dict[str, Any]]:
        """The reviewer's recent decisions on the stage, newest first, and whether each can still be taken back."""
        me = reviewer()
        recallable = {a.id for a in self.applied.get(me, ()) if a.stage == stage} if self.recalls else set()
        waiting = self.desks[stage].waiting
        out: list[dict[str, Any]] = []
        for e in self.ledger.recent(me, 20, stage):
            out.append({"id": e.id, "decision": e.decision, "at": e.at, "reason": e.reason,
                        "undo": "recall" if e.id in recallable and e.decision != "undone" else None})
        pending: list[dict[str, Any]] = [{"id": d.id, "decision": d.label, "at": d.due - self.settings.undo_seconds, "reason": d.reason,
                    "undo": "window"} for d in waiting.values() if d.reviewer == me]
        seen: set[str] = set()
        unique = []
        for item in sorted(pending, key=lambda i: -float(i["at"])) + out:
            if item["id"] not in seen:
                seen.add(item["id"])
                unique.append(item)
        return unique[:20]

    def logged_out(self, name: str) -> int:
        """`name` logged out: their locks are released (a decision of theirs waiting out its window stays)."""
        for desk in self.desks.values():
            desk.logged_out(name)
        released = self.locks.release_all(name)
        audit_event("logout", "*", "*", name, released=released)
        return released

    async def _apply_due(self) -> None:
        while not self.closing.is_set():
            now = time.time()
            for stage, desk in self.desks.items():
                for d in desk.due(now):
                    await self.apply(stage, d)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 0.2)

    def start(self) -> None:
        self.guard.locks = self.locks
        if self._applier is None and self.desks:
            self._applier = asyncio.create_task(self._apply_due(), name="console:decisions")

    async def stop(self) -> None:
        """Apply every decision still in its undo window (the reviewer meant it), then stop."""
        self.closing.set()
        if self._applier is not None:
            await self._applier
            self._applier = None
        for stage, desk in self.desks.items():
            for id in list(desk.waiting):
                d = desk.take(id)
                if d is not None:
                    await self.apply(stage, d)
        await self.peers.close()

    async def next_for(self, request: Request, stage: str, open_task: Any) -> dict[str, Any]:
        """Open the next task for the reviewer: the oldest free one they have not skipped, else the ones they
        skipped (oldest skip first); a page at a time, so a stage of 100,000 tasks costs what one of 100 does."""
        me, desk = reviewer(), self.desks[stage]
        skipped = desk.skips_of(me)
        skips = set(skipped)
        total = 0
        for n in range(NEXT_PAGES):
            total_now, items = await self.page(stage, n * NEXT_PAGE, NEXT_PAGE)
            total = total or total_now
            listed = [(i["id"], i["holder"]) for i in items if not i["decided"] and not i.get("unreadable")]
            for id in [c for c in candidates(me, listed) if c not in skips][:20]:
                opened = await open_task(request, stage, id)
                if opened is not None:
                    return {"task": opened, "total": total}
            if len(items) < NEXT_PAGE:
                break
        for id in skipped[:50]:
            opened = await open_task(request, stage, id)
            if opened is not None:
                desk.unskip(me, id)
                return {"task": opened, "total": total}
        return {"task": None, "total": total}

    # --- live views ---

    async def snapshot(self, stage: str | None) -> Any:
        """What a live view compares: computed at most once per interval, whoever asks."""
        now = time.monotonic()
        cached = self._snapshots.get(stage)
        if cached is not None and now - cached[0] < LIVE_INTERVAL / 2:
            return cached[1]
        if stage is None:
            value: Any = await self.counts()
        else:
            total, items = await self.page(stage, 0, PAGE_SIZE)
            value = {"stage": stage, "total": total,
                     "head": [(i["id"], i["holder"], i["decided"]) for i in items]}
        self._snapshots[stage] = (now, value)
        return value


def login_page(next_path: str, error: str | None = None) -> HTMLResponse:
    response = render("login.html", next=next_path, error=error)
    if error:
        response.status_code = 401
    return response


__all__: Sequence[str] = ["Console", "ConsoleSettings", "login_page"]
