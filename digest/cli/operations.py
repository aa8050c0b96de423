"""digest check: the configuration end to end, printed as a checklist."""

from __future__ import annotations

import click

from digest.cli import main
from digest.config import get_settings
from digest.operations import run_checks

MARKS = {True: "[ok]  ", False: "[FAIL]", None: "[--]  "}


def _txt_strings(value: str) -> str:
    # A DNS TXT string holds at most 255 bytes: a 2048-bit key's record is published as several.
    return " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))


@main.command()
@click.option("--send-test", "send_test", metavar="EMAIL",
              help="Also send one real digest (the newest edition) to EMAIL. Without it nothing is sent or written.")
def check(send_test: str | None) -> None:
    """Check the configuration: database, broker, SMTP, URLs, keys, DKIM, sources."""
    report = run_checks(get_settings(), send_test=send_test)
    for item in report.checks:
        click.echo(f"{MARKS[item.ok]} {item.name}: {item.detail}")
        if item.ok is False and item.fix:
            click.echo(f"       fix: {item.fix}")
    if report.dkim_record:
        name, value = report.dkim_record
        click.echo(f"\nDNS TXT record to publish for DKIM:\n  {name}.  IN  TXT  {_txt_strings(value)}")
    failed = report.failed
    click.echo("\nall checks passed" if not failed else
               f"\n{len(failed)} check{'s' if len(failed) != 1 else ''} failed: {', '.join(c.name for c in failed)}")
    if failed:
        raise SystemExit(1)
