"""``concierge`` command line. Each feature registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from api.db import make_engine, make_session_factory
from api.settings import Settings

# Feature modules that add subcommands: each exposes ``register(subparsers)``; every
# parser it adds sets ``func`` (args → exit code).
FEATURE_CLIS = (
    "api.core_cli",
    "knowledge.cli",
    "api.safety.cli",
    "api.channels.whatsapp.cli",
    "api.staff.cli",
    "api.hcps.cli",
    "feedback.cli",
    "api.demo.cli",
    "api.sla.cli",
)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``minimum``, with a clear message otherwise."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {n}")
        return n

    return parse


def open_sessions(settings: Settings) -> sessionmaker[Session]:
    """The session factory a command works with: an engine on the configured database."""
    return make_session_factory(make_engine(settings.database_url))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="concierge", description="HCP Concierge")
    sub = parser.add_subparsers(dest="command", required=True)
    for module_name in FEATURE_CLIS:
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from feedback.rollups import install as install_rollups

    install_rollups()  # every command that writes marks the CX rollup days it changes dirty
    from pydantic import ValidationError

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        # A CONCIERGE_* variable the settings refuse: its name and the reason, not a traceback.
        for error in exc.errors():
            name = "CONCIERGE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"concierge: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
