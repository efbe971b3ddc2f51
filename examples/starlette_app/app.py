"""An asyncio web app (Starlette) that enqueues with ``AsyncOmniQ`` and runs its own worker.

``OmniQLifespan`` (``omniq.contrib.starlette``) opens the store at start-up and, unless
``run_worker=False``, starts an ``AsyncWorkerPool`` on the app's event loop; on shutdown
the pool stops claiming and gives running tasks their grace period. The pool does not
handle signals: the server (uvicorn, hypercorn...) owns Ctrl-C and SIGTERM and ends the
lifespan. The same lifespan works for FastAPI (``FastAPI(lifespan=...)``). Run it from
the repository root with, for example::

    OMNIQ_BASE_DIR=./omniq_data uvicorn --factory examples.starlette_app.app:create_app

``POST /greetings`` with ``{"name": "Ada"}`` answers 202 and the task id;
``GET /greetings/<id>?wait=5`` waits up to 5 seconds for the result.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples.starlette_app.tasks import greet
from omniq import Settings, TaskCancelled, TaskFailed, TaskNotFound
from omniq.contrib.starlette import OmniQLifespan


def create_app(settings: Settings | None = None, *, run_worker: bool = True) -> Starlette:
    """The app, on ``settings`` (default: ``Settings.from_env()``, so ``OMNIQ_*``)."""
    # No store is touched until the app starts; lifespan.omniq is the running app's facade.
    lifespan = OmniQLifespan(settings, worker=run_worker)

    async def create_greeting(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        name = payload.get("name") if isinstance(payload, dict) else None
        if not isinstance(name, str) or not name:
            return JSONResponse({"error": "send JSON with a non-empty 'name'"}, status_code=400)
        task_id = await greet.using(lifespan.omniq).enqueue(name)
        return JSONResponse({"task_id": task_id}, status_code=202)

    async def show_greeting(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            return JSONResponse({"error": "wait must be a number of seconds"}, status_code=400)
        try:
            result = await lifespan.omniq.get_result(task_id, wait=wait > 0, timeout=min(wait, 30))
        except TaskNotFound:
            return JSONResponse({"error": f"no greeting {task_id}"}, status_code=404)
        except (TaskFailed, TaskCancelled) as ended:
            return JSONResponse({"task_id": task_id, "error": str(ended)}, status_code=200)
        except TimeoutError:
            result = None
        task = await lifespan.omniq.get_task(task_id)
        status = task.status.value if task is not None else "unknown"
        return JSONResponse({"task_id": task_id, "status": status, "greeting": result})

    return Starlette(
        routes=[
            Route("/greetings", create_greeting, methods=["POST"]),
            Route("/greetings/{task_id}", show_greeting, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
