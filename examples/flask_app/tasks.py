"""The Flask example's task functions, enqueued as ``examples.flask_app.tasks.<name>``.

The worker imports them by that path: start it from the repository root with
``omniq worker --import examples.flask_app.tasks``.
"""

from __future__ import annotations

from collections import Counter


def word_report(text: str, top: int = 3) -> dict[str, object]:
    """Count the words of ``text``: the slow job a web request should not wait for."""
    words = [word.strip(".,;:!?\"'()").lower() for word in text.split()]
    counts = Counter(word for word in words if word)
    if not counts:
        raise ValueError("the text has no words")
    return {"words": sum(counts.values()), "top": [word for word, _ in counts.most_common(top)]}
