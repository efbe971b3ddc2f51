"""``omniq schedules``: list the store's schedules; ``omniq schedules remove NAME``."""

from __future__ import annotations

import argparse
from typing import Any

from omniq import OmniQ
from omniq.cli import output
from omniq.cli.errors import EXIT_OK, UsageError
from omniq.cli.store import settings_from_args

HEADERS = ("name", "task", "when", "next fire", "last fire")


def add_parser(commands: Any, common: Any, schedule_name: Any) -> None:
    """The ``schedules`` subcommand; ``common`` adds the store and output options."""
    schedules = commands.add_parser(
        "schedules",
        help="list the store's schedules (or remove one)",
        description="List the schedules stored by name (declared with @task(cron=...) or "
        "omniq.schedule()), with when each fires next and fired last; 'remove NAME' "
        "removes one (its tasks already enqueued stay).",
    )
    actions = schedules.add_subparsers(dest="schedules_action", metavar="ACTION")
    remove = actions.add_parser("remove", help="remove a schedule by name")
    remove.add_argument("name", metavar="NAME", type=schedule_name)
    common(remove, top=False)
    common(schedules, top=False)


def run(args: argparse.Namespace) -> int:
    """List, or remove one."""
    with OmniQ(settings_from_args(args)) as omniq:
        if getattr(args, "schedules_action", None) == "remove":
            if not omniq.unschedule(args.name):
                raise UsageError(f"no schedule named {args.name!r} (see 'omniq schedules')")
            if args.json:
                output.print_json({"name": args.name, "removed": True})
            else:
                print(f"schedule {args.name} removed")
            return EXIT_OK
        stored = omniq.list_schedules()
    if args.json:
        output.print_json(
            [
                {
                    "name": entry.schedule.name,
                    "task": entry.schedule.func_path,
                    "when": entry.schedule.spec,
                    "next_fire": entry.next_fire(),
                    "last_fire": entry.last_fire,
                    "schedule": entry.schedule.to_dict(),
                }
                for entry in stored
            ]
        )
    elif not stored:
        output.message("no schedules")
    else:
        rows = [
            [
                entry.schedule.name,
                entry.schedule.func_path,
                entry.schedule.spec,
                output.local_time(entry.next_fire()),
                output.local_time(entry.last_fire),
            ]
            for entry in stored
        ]
        output.table(HEADERS, rows)
    return EXIT_OK
