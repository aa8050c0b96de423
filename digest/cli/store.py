"""digest fetch and digest db upgrade; the fetch step of `digest run`."""

from __future__ import annotations

import os
from datetime import date

import click

from digest.cli import main
from digest.cli.common import sessions
from digest.config import get_settings
from digest.db import get_engine, upgrade
from digest.fetch import FetchReport, fetch_papers, fetch_with_sample_fallback
from digest.progress import progress


def print_fetch_report(report: FetchReport) -> None:
    for note in report.notes:
        click.echo(f"note: {note}")
    for source, counts in report.per_source.items():
        click.echo(f"{source}: {counts.new} new, {counts.updated} updated, {counts.skipped} skipped")
    click.echo(f"fetched: {report.summary()}")
    for error in report.errors:
        click.echo(f"error: {error}", err=True)


@main.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Day to fetch (default: today, UTC).")
def fetch(day) -> None:
    """Fetch new papers from DIGEST_SOURCES into the store. Safe to repeat."""
    settings, factory = sessions()
    report = FetchReport()
    specs = settings.source_specs
    with progress("fetching", total=len(specs), every=5.0) as bar:
        for spec in specs:  # one source at a time, so the bar moves and counts as each lands
            part = fetch_papers(factory, settings, day.date() if day else None, specs=(spec,))
            report.add(part)
            bar.advance(new=part.counts.new, updated=part.counts.updated, failed=len(part.errors))
    print_fetch_report(report)
    if not report.ok:
        raise SystemExit(1)


def run_fetch_step(day: date | None = None) -> FetchReport:
    settings, factory = sessions()
    report = fetch_with_sample_fallback(factory, settings, "DIGEST_SOURCES" in os.environ, day)
    print_fetch_report(report)
    return report


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or bring it to the newest revision."""
    engine = get_engine(get_settings().database_url)
    before, after = upgrade(engine)
    click.echo(f"database at {after}" + (f" (was {before})" if before and before != after else ""))
