"""``omniq worker``: import the user's modules, then run a pool until it is stopped.

The blocking ``WorkerPool`` (threads) is the default; ``--async`` runs an
``AsyncWorkerPool`` under ``asyncio.run``. Both pools handle SIGINT/SIGTERM
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
    with omniq.worker_pool(queues=args.queues, health_file=args.health_file) as pool:
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
    async with omniq.worker_pool(queues=args.queues, health_file=args.health_file) as pool:
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
    import_modules(task_module_names(settings))
    served = declared_paths()
    progress = Progress(args.limit) if args.limit is not None and not args.json else None
    setup_logging(args.log_level, under_bar=progress is not None and progress.is_tty)
    kind = "asyncio tasks" if args.use_async else "threads"
    if args.limit is not None:
        until = f"until {args.limit} task(s) ran or none is due"
        if args.duration is not None:
            until = f"until {args.limit} task(s) ran or {args.duration:g}s passed"
    elif args.duration is not None:
        until = f"for {args.duration:g}s"
    else:
        until = "until Ctrl-C or SIGTERM"
    queues = ", ".join(args.queues) if args.queues else "every queue"
    output.message(
        f"omniq worker: {settings.concurrency} {kind} on {describe_store(settings)} "
        f"serving {queues}, {until}"
    )
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
