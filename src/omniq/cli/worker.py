"""``omniq worker``: import the user's modules, then run a pool until it is stopped.

The blocking ``WorkerPool`` (threads) is the default; ``--async`` runs an
``AsyncWorkerPool`` under ``asyncio.run``; ``--processes N`` runs each task of either
in one of N child processes (the process executor). Both pools handle SIGINT/SIGTERM
themselves while they serve: the first signal stops claiming and gives running
tasks their grace period, a second one stops at once (unfinished tasks are put back
as pending).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import loguru

from omniq import AsyncOmniQ, OmniQ
from omniq import logging as omniq_logging
from omniq.allowlist import AllowList, task_module_names
from omniq.cli import output
from omniq.cli.errors import EXIT_OK, CommandFailed, UsageError
from omniq.cli.progress import Progress, watch_in_loop, watch_in_thread
from omniq.cli.store import describe_store, settings_from_args
from omniq.config import Settings
from omniq.logging import MARKER
from omniq.tasks import declared_paths


def import_modules(modules: Sequence[str]) -> None:
    """Make the current directory importable (as ``python -m`` does), then import ``modules``."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
                raise UsageError(f"--import {name}: no module named {error.name!r}") from None
            raise CommandFailed(f"--import {name} failed: {error}") from error
        except Exception as error:  # the module exists but raised while importing
            raise CommandFailed(
                f"--import {name} failed: {type(error).__name__}: {error}"
            ) from error


def setup_logging(level: str | None, under_bar: bool) -> None:
    """omniq's records on stderr: ``level``, else ``OMNIQ_LOG_LEVEL``, else INFO (WARNING
    under a progress bar, which log lines would break up)."""
    # This process is the application. loguru's default stderr sink stays for the
    # tasks' own records but no longer takes omniq's, which would show twice.
    with contextlib.suppress(ValueError):  # already removed (by an imported module)
        loguru.logger.remove(0)
        loguru.logger.add(
            sys.stderr, level="DEBUG", filter=lambda record: MARKER not in record["extra"]
        )
    if level == "OFF":
        return
    try:
        if level is None and os.environ.get(omniq_logging.ENV_LEVEL, "").strip():
            omniq_logging.configure()  # the environment decides
        else:
            omniq_logging.configure(level=level or ("WARNING" if under_bar else "INFO"))
    except ValueError as error:
        raise UsageError(f"bad logging settings: {error}") from None


def with_executor(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the process executor's flags; ``UsageError`` for a bad mix."""
    flags = {
        "--max-tasks-per-child": ("max_tasks_per_child", args.max_tasks_per_child),
        "--max-memory-per-child": ("max_memory_per_child", args.max_memory_per_child),
        "--kill-grace": ("kill_grace", args.kill_grace),
    }
    changes = {name: value for name, value in flags.values() if value is not None}
    if args.processes is not None:
        changes.update(executor="process", processes=args.processes)
    elif settings.executor != "process":
        given = [flag for flag, (_, value) in flags.items() if value is not None]
        if given:
            raise UsageError(
                f"{given[0]} applies to the process executor: add --processes N "
                "(or set OMNIQ_EXECUTOR=process)"
            )
    try:
        settings = settings.replace(**changes)
    except (TypeError, ValueError) as error:
        raise UsageError(f"bad worker settings: {error}") from None
    processes = settings.processes or args.concurrency or settings.concurrency
    if settings.executor == "process" and (args.concurrency or 0) > processes:
        raise UsageError(
            f"--concurrency {args.concurrency} exceeds the {processes} child processes: "
            "each running task needs a child of its own"
        )
    return settings


def _pool_options(args: argparse.Namespace) -> dict[str, Any]:
    # An explicit --concurrency wins over the process executor's default (processes).
    options: dict[str, Any] = {"queues": args.queues, "health_file": args.health_file}
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    return options


def _serve_threads(settings: Settings, args: argparse.Namespace, progress: Progress | None) -> int:
    # Not "with OmniQ(...)": that opens the store at once, and a store that cannot be
    # opened yet (a read-only disk, a server still starting) would end the worker;
    # the pool opens it itself and retries with back-off.
    omniq = OmniQ(settings)
    try:
        return _serve_threads_on(omniq, args, progress)
    finally:
        omniq.close()


def _serve_threads_on(omniq: OmniQ, args: argparse.Namespace, progress: Progress | None) -> int:
    with omniq.worker_pool(**_pool_options(args)) as pool:
        finish = watch_in_thread(lambda: pool.processed, progress) if progress else None
        try:
            return pool.process_tasks(limit=args.limit, duration=args.duration)
        finally:
            if finish is not None:
                finish()
            if progress is not None:
                progress.close(pool.processed)


async def _serve_async(
    settings: Settings, args: argparse.Namespace, progress: Progress | None
) -> int:
    omniq = AsyncOmniQ(settings)  # opened by the pool, with retries (see _serve_threads)
    try:
        return await _serve_async_on(omniq, args, progress)
    finally:
        await omniq.close()


async def _serve_async_on(
    omniq: AsyncOmniQ, args: argparse.Namespace, progress: Progress | None
) -> int:
    async with omniq.worker_pool(**_pool_options(args)) as pool:
        reporter = watch_in_loop(lambda: pool.processed, progress) if progress else None
        try:
            return await pool.process_tasks(limit=args.limit, duration=args.duration)
        finally:
            if reporter is not None:
                reporter.cancel()
            if progress is not None:
                progress.close(pool.processed)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped (or ``--limit``/``--duration``); print how many tasks ran."""
    settings = settings_from_args(args, concurrency=args.concurrency)
    # --import MOD imports MOD (its @task declarations register) and allows MOD.*.
    settings = settings.replace(imports=(*settings.imports, *args.imports))
    settings = with_executor(settings, args)
    import_modules(task_module_names(settings))
    served = declared_paths()
    progress = Progress(args.limit) if args.limit is not None and not args.json else None
    setup_logging(args.log_level, under_bar=progress is not None and progress.is_tty)
    runs = f"{settings.concurrency} {'asyncio tasks' if args.use_async else 'threads'}"
    if settings.executor == "process":
        processes = settings.processes or args.concurrency or settings.concurrency
        runs = f"{processes} child process{'es' if processes != 1 else ''}"
        if args.concurrency is not None and args.concurrency < processes:
            runs += f" ({args.concurrency} tasks at once)"
    if args.limit is not None:
        until = f"until {args.limit} task(s) ran or none is due"
        if args.duration is not None:
            until = f"until {args.limit} task(s) ran or {args.duration:g}s passed"
    elif args.duration is not None:
        until = f"for {args.duration:g}s"
    else:
        until = "until Ctrl-C or SIGTERM"
    queues = ", ".join(args.queues) if args.queues else "every queue"
    output.message(f"omniq worker: {runs} on {describe_store(settings)} serving {queues}, {until}")
    if served:
        output.message(f"omniq worker: declared tasks: {', '.join(served)}")
    allowed = ", ".join(AllowList.from_settings(settings).patterns)
    output.message(
        f"omniq worker: also allowed: {allowed or 'nothing else'} "
        "(see 'Settings.task_modules' / --import)"
    )
    if args.use_async:
        processed = asyncio.run(_serve_async(settings, args, progress))
    else:
        processed = _serve_threads(settings, args, progress)
    if args.json:
        output.print_json({"processed": processed})
    output.message(f"omniq worker: stopped after {processed} task(s)")
    return EXIT_OK
