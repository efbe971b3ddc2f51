"""A Flask app that hands slow work to omniq.

``POST /reports`` with ``{"text": "..."}`` enqueues a task and answers 202 with its id
at once; ``GET /reports/<id>`` tells how it is going and, when done, its result. The
tasks run in a separate worker process started from the command line. From the
repository root, in two shells::

    OMNIQ_BASE_DIR=./omniq_data flask --app examples.flask_app.app run
    OMNIQ_BASE_DIR=./omniq_data omniq worker --import examples.flask_app.tasks

then ``curl -X POST localhost:5000/reports -H 'Content-Type: application/json'
-d '{"text": "to be or not to be"}'`` and ``curl localhost:5000/reports/<id>``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request, url_for

from examples.flask_app.tasks import word_report
from omniq import OmniQ, Settings, TaskStatus


def create_app(settings: Settings | None = None) -> Flask:
    """The app, on ``settings`` (default: ``Settings.from_env()``, so ``OMNIQ_*``)."""
    app = Flask(__name__)
    # One blocking facade for the whole app: it is safe to share between the
    # server's threads, and it opens the store on first use.
    omniq = OmniQ(settings if settings is not None else Settings.from_env())
    app.extensions["omniq"] = omniq

    @app.post("/reports")
    def create_report() -> tuple[dict[str, Any], int]:
        payload = request.get_json(silent=True) or {}
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            return {"error": "send JSON with a non-empty 'text'"}, 400
        # Typed: mypy checks the arguments against word_report's own signature.
        task_id = word_report.using(omniq).enqueue(text)
        return {"task_id": task_id, "url": url_for("show_report", task_id=task_id)}, 202

    @app.get("/reports/<task_id>")
    def show_report(task_id: str) -> tuple[dict[str, Any], int]:
        task = omniq.get_task(task_id)
        if task is None:
            return {"error": f"no report {task_id}"}, 404
        body: dict[str, Any] = {"task_id": task_id, "status": task.status.value}
        if task.status == TaskStatus.COMPLETED:
            body["report"] = task.result
        elif task.error is not None:
            body["error"] = str(task.error)
        return body, 200

    return app
