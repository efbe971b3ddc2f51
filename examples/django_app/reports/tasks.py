"""Django tasks (``django.tasks.task``): plain Django code, stored and run by omniq."""

from __future__ import annotations

from collections import Counter

from django.tasks import TaskContext, task


@task(queue_name="reports", priority=10)
def word_report(text: str, top: int = 3) -> dict[str, object]:
    """Count the words of ``text``: the slow job a request should not wait for."""
    words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
    counts = Counter(word for word in words if word)
    if not counts:
        raise ValueError("the text has no words")
    return {"words": sum(counts.values()), "top": [word for word, _ in counts.most_common(top)]}


@task(takes_context=True)
def whoami(context: TaskContext) -> dict[str, object]:
    """What a task knows of its own run."""
    return {"id": context.task_result.id, "attempt": context.attempt}
