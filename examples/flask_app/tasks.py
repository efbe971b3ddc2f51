"""The Flask example's tasks, declared with ``@task``.

The worker imports this module and runs what it declares: start it from the
repository root with ``omniq worker --import examples.flask_app.tasks``.
"""

from __future__ import annotations

from collections import Counter

from omniq import task


@task(max_retries=2, timeout=30)
def word_report(text: str, top: int = 3) -> dict[str, object]:
    """Count the words of ``text``: the slow job a web request should not wait for."""
    words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
    counts = Counter(word for word in words if word)
    if not counts:
        raise ValueError("the text has no words")
    return {"words": sum(counts.values()), "top": [word for word, _ in counts.most_common(top)]}


@task
def report_title(text: str) -> str:
    """A task that uses its app: ``flask omniq worker`` runs it in an app context."""
    from flask import current_app

    return f"{current_app.config.get('REPORT_TITLE', 'Report')}: {text[:20]}"
