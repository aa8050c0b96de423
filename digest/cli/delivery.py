"""digest send, and digest run: the main job, fetch then send."""

from __future__ import annotations

from pathlib import Path

import click

from digest.cli import main
from digest.cli.common import sessions
from digest.cli.store import run_fetch_step
from digest.delivery import SendRun, send_now
from digest.demo import DEMO_EMAIL, DEMO_TOPICS, ensure_demo_subscriber, write_html_beside
from digest.progress import progress


def print_send_run(run: SendRun, fine_print: bool = True) -> None:
    for note in run.notes + (run.fine_print if fine_print else []):
        click.echo(f"note: {note}")
    r = run.report
    click.echo(
        f"sent: {r.sent}, skipped (nothing matched): {r.skipped}, failed: {r.failed}, "
        f"suppressed: {r.suppressed + r.bounced}"
        + (f", to retry later: {r.retrying}" if r.retrying else "")
        + f"  [edition {run.edition or '-'}, via {run.transport}]"
    )
    for error in r.errors:
        click.echo(f"error: {error}", err=True)


def _send(edition, email, demo: bool = False) -> SendRun:
    settings, factory = sessions()
    run = send_now(
        factory, settings, edition=edition, email=email,
        progress_factory=lambda total: progress("sending", total=total),
    )
    print_send_run(run, fine_print=not demo)  # a newcomer needs the paths, not the fine print
    return run


@main.command()
@click.option("--edition", type=click.DateTime(["%Y-%m-%d"]), help="Send this edition to every active subscriber who has not had it, whatever the hour.")
@click.option("--to", "email", metavar="EMAIL", help="Only this subscriber, whatever their hour (newest edition unless --edition).")
def send(edition, email) -> None:
    """Build and send the digests that are due now."""
    run = _send(edition.date() if edition else None, email)
    if run.report.errors:
        raise SystemExit(1)


@main.command()
def run() -> None:
    """The main job: fetch new papers, then send the digests that are due."""
    report = run_fetch_step()
    settings, factory = sessions()
    if ensure_demo_subscriber(factory):
        click.echo(
            f"note: no subscribers yet, so this run sends a demo digest to {DEMO_EMAIL} "
            f"(topics: {'; '.join(DEMO_TOPICS)}).\n"
            "      Add real ones with: digest subscribe you@example.org --topics \"diffusion; speech OR audio\" --confirmed"
        )
        sent = _send(None, DEMO_EMAIL, demo=True)
        for path in sent.report.paths:
            click.echo(f"digest written to: {Path(path).resolve()}")
            html = write_html_beside(path)
            if html is not None:
                click.echo(f"open it in a browser: file://{html.resolve()}")
    else:
        sent = _send(None, None)
    if not report.ok or sent.report.errors:
        raise SystemExit(1)
