"""A module that declares a schedule in code, for the scheduler's tests (imported lazily:
its schedule then exists in every store a pool of the importing process starts on)."""

from __future__ import annotations

from omniq import task


@task(every=3600)
def heartbeat() -> str:
    return "alive"
