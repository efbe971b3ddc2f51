"""``omniq web``: serve the dashboard (``omniq.web``) with uvicorn until Ctrl-C.

It binds to 127.0.0.1 unless told otherwise, and refuses any other address without
a token (``--token`` or ``OMNIQ_WEB_TOKEN``; the variable keeps it out of ``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from omniq import AsyncOmniQ
from omniq.cli import output
from omniq.cli.errors import EXIT_OK, CommandFailed, UsageError
from omniq.cli.store import describe_store, settings_from_args
from omniq.config import Settings

TOKEN_VARIABLE = "OMNIQ_WEB_TOKEN"


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard; return when the server stops."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE) or None
    settings = settings_from_args(args)
    try:
        import uvicorn  # noqa: F401  (needed by _serve: checked here, before anything runs)

        from omniq.web.security import check_token, is_loopback
    except ImportError as error:
        raise CommandFailed(
            f"the dashboard needs the web extra: pip install 'omniq[web]' ({error})"
        ) from None
    try:
        check_token(token)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if token is None and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} serves other machines: give a token with --token or "
            f"{TOKEN_VARIABLE} (or bind to 127.0.0.1)"
        )
    guarded = []
    if args.read_only:
        guarded.append("read-only")
    if token is not None:
        guarded.append("token required")
    host = f"[{args.host}]" if ":" in args.host else args.host
    output.message(
        f"omniq web: http://{host}:{args.port}/ on {describe_store(settings)}"
        + (f" ({', '.join(guarded)})" if guarded else "")
    )
    asyncio.run(_serve(settings, args, token))
    return EXIT_OK


async def _serve(settings: Settings, args: argparse.Namespace, token: str | None) -> None:
    import uvicorn

    from omniq.web import create_app

    async with AsyncOmniQ(settings) as omniq:
        app = create_app(omniq, token=token, read_only=args.read_only)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level.lower(),
            lifespan="off",
            server_header=False,
        )
        await uvicorn.Server(config).serve()
