"""The ``omniq`` command: workers and task inspection from a shell.

Entry points: the ``omniq`` console script and ``python -m omniq`` both call
:func:`main`. Modules, one job each: ``parser`` (the command line), ``durations``
(``30s``, ``1h30m``...), ``store`` (flags and ``OMNIQ_*`` into ``Settings``),
``output`` (tables and JSON), ``commands`` (enqueue, status, list, show, retry,
cancel, purge), ``worker`` and ``progress`` (``omniq worker``), ``errors`` (exit
statuses) and ``app`` (``main``). See docs/cli.md.
"""

from omniq.cli.app import main

__all__ = ["main"]
