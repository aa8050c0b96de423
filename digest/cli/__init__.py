"""The `digest` command: the operator's interface (see README). Each group of commands lives in
its own module and stays thin: parse, call one function of the library, print."""

from __future__ import annotations

import logging
import sys

import click

from digest.config import get_settings
from digest.errors import ConfigError, DigestError
from digest.operations import configure_logging, count_into_store


class DigestGroup(click.Group):
    """Turns the library's one-line errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except DigestError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=DigestGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Daily Papers Digest: fetch papers, match topics, send one digest a morning."""
    settings = get_settings()
    configure_logging(settings.log_format, logging.DEBUG if verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if ctx.invoked_subcommand != "check":  # `digest check` writes nothing, not even its counts
        count_into_store(settings)


# Commands register themselves on `main` when their module is imported.
from digest.cli import store as _store  # noqa: E402,F401
from digest.cli import delivery as _delivery  # noqa: E402,F401
from digest.cli import search as _search  # noqa: E402,F401
from digest.cli import subscribers as _subscribers  # noqa: E402,F401
from digest.cli import preview as _preview  # noqa: E402,F401
from digest.cli import operations as _operations  # noqa: E402,F401
