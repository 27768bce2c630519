"""`xrouter`: operator commands (migrate runs against the database; keys, credits, usage,
generations, statement and plans against the gateway's management API). Each subcommand is one
function that declares its arguments and returns its handler; list it in COMMANDS."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence

from xrouter_router.cli_api import (
    credits_command,
    generations_command,
    keys_command,
    plans_command,
    statement_command,
    usage_command,
)
from xrouter_router.settings import database_url
from xrouter_router.storage.sql.migrate import MigrationError, migrate
from xrouter_router.storage.sql.postgres import DatabaseUnreachable

Handler = Callable[[argparse.Namespace], int]
Subcommand = Callable[[argparse.ArgumentParser], Handler]


def _database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=database_url(),
                        help="libpq conninfo or URL (default: $XROUTER_DATABASE_URL, verified against "
                             "$XROUTER_DATABASE_TLS_CA when set); list every node of an HA pair with "
                             "target_session_attrs=read-write")
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the database to accept connections (default: 60)")


def migrate_command(parser: argparse.ArgumentParser) -> Handler:
    """Apply the schema migrations not applied yet."""
    _database_url(parser)

    def run(args: argparse.Namespace) -> int:
        applied = asyncio.run(migrate(args.database_url, wait=args.wait))
        print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")
        return 0
    return run


COMMANDS: Mapping[str, Subcommand] = {
    "migrate": migrate_command,
    "keys": keys_command,
    "credits": credits_command,
    "usage": usage_command,
    "generations": generations_command,
    "statement": statement_command,
    "plans": plans_command,
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="xrouter", description="XRouter operator commands.")
    subparsers = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.__doc__, description=command.__doc__)
        sub.set_defaults(handler=command(sub))
    return root


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if getattr(args, "database_url", None) == "":
        cli.error("no database: pass --database-url or set XROUTER_DATABASE_URL")
    handler: Handler = args.handler
    try:
        return handler(args)
    except (DatabaseUnreachable, MigrationError) as exc:
        print(f"xrouter {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
