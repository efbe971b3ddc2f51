"""JSON views: enqueue with ``task.enqueue``, look up with ``task.get_result``."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from examples.django_app.reports.tasks import word_report


@csrf_exempt
@require_POST
def create_report(request: HttpRequest) -> JsonResponse:
    """``{"text": "..."}`` -> 202 and the result id; the worker does the counting."""
    try:
        text = json.loads(request.body).get("text")
    except (ValueError, AttributeError):
        text = None
    if not isinstance(text, str) or not text.strip():
        return JsonResponse({"error": "send JSON with a non-empty 'text'"}, status=400)
    result = word_report.enqueue(text)
    return JsonResponse({"id": result.id, "status": result.status}, status=202)


@require_GET
def show_report(request: HttpRequest, result_id: str) -> JsonResponse:
    """The report's status, and its result or error once it has finished."""
    try:
        result = word_report.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": f"no report {result_id}"}, status=404)
    body: dict[str, object] = {"id": result.id, "status": result.status}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["report"] = result.return_value
    elif result.status == TaskResultStatus.FAILED:
        body["error"] = result.errors[-1].traceback.strip().splitlines()[-1]
    return JsonResponse(body)
