"""digest subscribe, digest import, digest stats, digest web."""

from __future__ import annotations

import json

import click

from digest.cli import main
from digest.cli.common import sessions, settings_and_engine
from digest.read import stats as subscriber_stats
from digest.subscriptions import add_subscriber, import_csv


@main.command("subscribe")
@click.argument("email")
@click.option("--topics", default="", help='Topics separated by semicolons, e.g. "pretraining; diffusion -video".'
              " Without any (or empty): the day's trending papers.")
@click.option("--confirmed", is_flag=True, help="Skip double opt-in: the operator vouches for this address.")
@click.option("--timezone", "zone", help="IANA time zone, e.g. Europe/Berlin (default UTC).")
@click.option("--hour", type=int, help="Local delivery hour, 0-23 (default 7).")
def subscribe_command(email: str, topics: str, confirmed: bool, zone: str | None, hour: int | None) -> None:
    """Subscribe EMAIL; sends a confirmation email unless --confirmed."""
    settings, factory = sessions()
    outcome = add_subscriber(factory, email, topics.split(";"), settings, timezone=zone, hour=hour, confirmed=confirmed)
    subscriber = outcome.subscriber
    what = f"{len(subscriber.topics)} topic(s)" if subscriber.topics else "no topics: the day's trending papers"
    click.echo(f"{subscriber.email}: {subscriber.status.value}, {what}; {outcome.note}")


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--confirmed", is_flag=True, help="Skip double opt-in for every row.")
@click.option("--encoding", help="The file's encoding (default: detected; UTF-8, else Windows-1252/Latin-1).")
def import_command(path: str, confirmed: bool, encoding: str | None) -> None:
    """Import subscribers from a CSV file: email, topics (separated by ;, may be empty: trending papers),
    optional timezone, hour."""
    settings, factory = sessions()
    report = import_csv(factory, path, settings, confirmed=confirmed, encoding=encoding)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for line, message in report.errors:
        click.echo(f"line {line}: {message}", err=True)
    click.echo(f"imported: {report.added} new, {report.unchanged} already known, {len(report.errors)} bad row(s)"
               + ("" if confirmed else f"; {report.confirmations} confirmation email(s) sent"))
    if report.errors:
        raise SystemExit(1)


@main.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats_command(as_json: bool) -> None:
    """Counts of subscribers, topics, deliveries and papers."""
    _, factory = sessions()
    with factory() as session:
        figures = subscriber_stats(session)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    s = figures["subscribers"]
    click.echo(f"subscribers: {s['active']} active, {s['pending']} pending, {s['unsubscribed']} unsubscribed")
    click.echo(f"topics: {figures['topics']} ({figures['distinct_topics']} distinct)")
    for row in figures["top_topics"]:
        click.echo(f"  {row['subscribers']:>5}  {row['topic']}")
    d = figures["deliveries"]
    click.echo("deliveries: " + ", ".join(f"{n} {status}" for status, n in d.items()))
    click.echo(f"suppressed addresses: {figures['suppressed']}")
    click.echo(f"papers: {figures['papers']}")


@main.command("web")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, help="Port (default: PORT, else 8000).")
def web_command(host: str, port: int | None) -> None:
    """Serve the subscribe, confirm, settings and unsubscribe pages."""
    # Imported here, not at the top: every other command would pay for loading the web server.
    from digest.web import create_app, serve

    settings, _ = settings_and_engine()
    app = create_app(settings)
    click.echo(f"serving on http://{host}:{port or settings.port} (links point at {settings.base_url})")
    serve(app, settings, host, port or settings.port)  # uvicorn with its limits (digest/web/server.py)
