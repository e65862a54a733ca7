"""Shared fixtures. Backends for the queue contract suite: every test there runs on each of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeteer.queues.base import BaseQueue

QueueFactory = Callable[[Any, str], BaseQueue[Any]]


@pytest.fixture(params=["memory", "sqlite"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh backend URL per test, one per backend."""
    if request.param == "memory":
        yield "memory://"
    else:
        url = f"sqlite:///{tmp_path / 'queues.db'}"
        yield url
        from pipeteer.queues.sqlite import SqliteStore

        SqliteStore.at(tmp_path / "queues.db").close()


@pytest.fixture
def make_queue(backend_url: str) -> QueueFactory:
    from pipeteer.queues.backends import backend_from_url

    backend = backend_from_url(backend_url, workflow_name="test")
    return lambda Type, name: backend.make_queue(Type, [name])
