"""The `digest` command: the operator's interface (see README). Each group of commands lives in
its own module and stays thin: parse, call one function of the library, print."""

from __future__ import annotations

import logging
import sys

import click

from digest.errors import ConfigError, DigestError


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
def main(verbose: bool) -> None:
    """Daily Papers Digest: fetch papers, match topics, send one digest a morning."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


# Commands register themselves on `main` when their module is imported.
from digest.cli import store as _store  # noqa: E402,F401
from digest.cli import delivery as _delivery  # noqa: E402,F401
from digest.cli import search as _search  # noqa: E402,F401
from digest.cli import subscribers as _subscribers  # noqa: E402,F401
from digest.cli import preview as _preview  # noqa: E402,F401
