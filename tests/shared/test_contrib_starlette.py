"""``omniq.contrib.starlette.OmniQLifespan``: the store and a worker pool in an app's lifespan."""

from __future__ import annotations

import multiprocessing
import warnings
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from omniq import AsyncOmniQ, Settings, TaskStatus
from omniq.contrib.starlette import OmniQLifespan

TASK = "task_functions.add"  # tests/task_functions.py, on sys.path through tests/conftest.py


def settings_in(tmp_path: Path) -> Settings:
    return Settings(
        base_dir=tmp_path / "store", poll_interval=0.05, task_modules=("task_functions",)
    )


def app_with(lifespan: OmniQLifespan) -> Starlette:
    async def enqueue(request: Request) -> JSONResponse:
        omniq: AsyncOmniQ = request.state.omniq  # the lifespan's state
        task_id = await omniq.enqueue(TASK, args=[20, 22])
        wait = request.query_params.get("wait") == "1"
        result = await omniq.get_result(task_id, wait=wait, timeout=30) if wait else None
        return JSONResponse({"id": task_id, "result": result})

    return Starlette(routes=[Route("/", enqueue, methods=["POST"])], lifespan=lifespan)


def test_the_worker_runs_on_the_apps_loop_and_stops_with_it(tmp_path: Path) -> None:
    lifespan = OmniQLifespan(settings_in(tmp_path), worker=True, concurrency=2)
    assert lifespan.pool is None
    with TestClient(app_with(lifespan)) as client:
        assert lifespan.pool is not None and lifespan.pool.handle_signals is False
        answer = client.post("/", params={"wait": "1"}).json()
        assert answer["result"] == 42
    assert lifespan.pool is None
    with pytest.raises(RuntimeError, match="not running"):
        lifespan.omniq  # noqa: B018


def test_without_a_worker_tasks_wait_for_one(tmp_path: Path) -> None:
    lifespan = OmniQLifespan(settings_in(tmp_path))
    with TestClient(app_with(lifespan)) as client:
        task_id = client.post("/").json()["id"]
    assert lifespan.pool is None
    from omniq import OmniQ

    with OmniQ(settings_in(tmp_path)) as omniq:
        assert omniq.get_task(task_id)["status"] == TaskStatus.PENDING


def test_the_lifespan_can_run_again(tmp_path: Path) -> None:
    lifespan = OmniQLifespan(settings_in(tmp_path), worker=True)
    for _ in range(2):  # a test suite that starts the same app twice
        with TestClient(app_with(lifespan)) as client:
            assert client.post("/", params={"wait": "1"}).json()["result"] == 42


def test_fastapi_takes_it_as_its_lifespan(tmp_path: Path) -> None:
    fastapi = pytest.importorskip("fastapi")
    lifespan = OmniQLifespan(settings_in(tmp_path), worker=True)
    app = fastapi.FastAPI(lifespan=lifespan)

    @app.post("/add")
    async def add(a: int, b: int) -> dict[str, Any]:
        task_id = await lifespan.omniq.enqueue(TASK, args=[a, b])
        return {"sum": await lifespan.omniq.get_result(task_id, wait=True, timeout=30)}

    with TestClient(app) as client:
        assert client.post("/add", params={"a": 1, "b": 2}).json() == {"sum": 3}


def test_inside_an_apps_own_lifespan(tmp_path: Path) -> None:
    import contextlib
    from collections.abc import AsyncIterator

    omniq_lifespan = OmniQLifespan(settings_in(tmp_path), worker=True)
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("app start")
        async with omniq_lifespan(app) as state:
            yield {**state, "other": 1}
        events.append("app stop")

    app = app_with(omniq_lifespan)
    app.router.lifespan_context = lifespan
    with TestClient(app) as client:
        assert client.post("/", params={"wait": "1"}).json()["result"] == 42
    assert events == ["app start", "app stop"]


def _serve_in_child(lifespan: OmniQLifespan, answers: Any) -> None:
    with TestClient(app_with(lifespan)) as client:
        answers.put(client.post("/", params={"wait": "1"}).json()["result"])


def test_a_forked_server_process_opens_its_own_store(tmp_path: Path) -> None:
    lifespan = OmniQLifespan(settings_in(tmp_path), worker=True)
    with TestClient(app_with(lifespan)) as client:  # the store used before fork()
        assert client.post("/", params={"wait": "1"}).json()["result"] == 42
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    children = [context.Process(target=_serve_in_child, args=(lifespan, answers)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert sorted(answers.get(timeout=10) for _ in children) == [42, 42]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="handles signals"):
        OmniQLifespan(Settings(eager=True), handle_signals=True)
    with pytest.raises(TypeError, match="worker must be True or False"):
        OmniQLifespan(Settings(eager=True), worker="yes")  # type: ignore[arg-type]
