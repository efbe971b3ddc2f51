"""Where the tasks of each ``TASKS`` alias live in the store: one omniq queue per Django queue.

Several aliases may share one store, and each worker runs only its own alias's tasks, so
the Django queue ``emails`` of the alias ``default`` is the omniq queue
``default:emails`` (``omniq stats`` and ``omniq list --queue default:emails`` show them).
An alias is a letter or digit, then letters, digits and ``_.-``; a queue name may also
hold ``:``. Alias, colon and queue name together are at most 64 characters (omniq's
bound on a queue name).
"""

from __future__ import annotations

import re

from omniq._validation import normalize_queue

SEPARATOR = ":"
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_alias(alias: object) -> str:
    """``alias`` if it can prefix omniq queue names; ``ValueError`` naming it otherwise."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise ValueError(
            f"the TASKS alias {alias!r} cannot name omniq queues: use a letter or digit, "
            "then letters, digits and '_.-'"
        )
    return alias


def omniq_queue(alias: str, queue_name: object) -> str:
    """The omniq queue of ``queue_name`` in ``alias``; ``ValueError`` if omniq cannot store it."""
    if not isinstance(queue_name, str) or not queue_name:
        raise ValueError(f"the queue name must be a non-empty str, got {queue_name!r}")
    try:
        return normalize_queue(f"{alias}{SEPARATOR}{queue_name}")
    except ValueError:
        raise ValueError(
            f"the queue name {queue_name!r} of the TASKS alias {alias!r} cannot be stored by "
            f"omniq: '{alias}{SEPARATOR}<queue name>' must be at most 64 letters, digits "
            "and '_.:-'"
        ) from None


def django_queue_name(alias: str, queue: str) -> str | None:
    """The Django queue name of the omniq ``queue``, or ``None`` if it is not ``alias``'s."""
    prefix = f"{alias}{SEPARATOR}"
    if not queue.startswith(prefix) or len(queue) == len(prefix):
        return None
    return queue[len(prefix) :]
