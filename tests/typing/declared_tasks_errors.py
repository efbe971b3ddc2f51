"""Wrong uses of declared tasks, each of which mypy must flag.

Every line below carries ``# type: ignore[<code>]``; the ``types`` session checks this
file with ``--warn-unused-ignores``, so a line mypy no longer flags (the typing got
looser) fails the session. The file is never run.
"""

from __future__ import annotations

from omniq import AsyncOmniQ, OmniQ, task


@task
def send_email(to: str, subject: str) -> bool:
    return bool(to and subject)


@task
async def resize(image_id: int) -> int:
    return image_id


def blocking(omniq: OmniQ) -> list[object]:
    send_email.using(omniq).enqueue(1, "hi")  # type: ignore[arg-type]
    send_email.using(omniq).enqueue("a@b.c")  # type: ignore[call-arg]
    send_email.using(omniq).enqueue("a@b.c", "hi", "extra")  # type: ignore[call-arg]
    send_email.using(omniq).enqueue("a@b.c", topic="hi")  # type: ignore[call-arg]
    send_email.using(omniq, priority="high")  # type: ignore[call-overload]
    send_email.using(omniq, delay=5)  # type: ignore[call-overload]
    send_email.using("omniq")  # type: ignore[call-overload]
    send_email(1, 2)  # type: ignore[arg-type]
    count: int = send_email.using(omniq).enqueue("a@b.c", "hi")  # type: ignore[assignment]
    resize.using(omniq).enqueue("7")  # type: ignore[arg-type]
    return [count]


async def asynchronous(aomniq: AsyncOmniQ) -> list[object]:
    task_id: str = resize.using(aomniq).enqueue(7)  # type: ignore[assignment]
    await resize.using(aomniq).enqueue(image_id="7")  # type: ignore[arg-type]
    await send_email.using(aomniq).enqueue(subject="hi")  # type: ignore[call-arg]
    return [task_id]


@task(queue=5)  # type: ignore[call-overload, untyped-decorator]
def bad_queue() -> None: ...


@task(unique_key="k")  # type: ignore[call-overload, untyped-decorator]
def no_keys_at_declaration() -> None: ...
