"""digest preview: write one subscriber's digest (HTML and text) to files, send nothing."""

from __future__ import annotations

import re
from pathlib import Path

import click

from digest.cli import main
from digest.cli.common import sessions
from digest.delivery import preview_digest


@main.command()
@click.argument("email")
@click.option("--edition", type=click.DateTime(["%Y-%m-%d"]), help="Edition (YYYY-MM-DD); default: the newest.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("preview"),
    show_default=True, help="Folder for the files.",
)
def preview(email: str, edition, out_dir: Path) -> None:
    """Write EMAIL's digest as it would be sent (HTML and plain text) and print the two paths."""
    settings, factory = sessions()
    with factory() as session:
        result = preview_digest(session, settings, email, edition.date() if edition else None)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', email.strip().lower())}-{result.edition.isoformat()}"
    html_path, text_path = out_dir / f"{stem}.html", out_dir / f"{stem}.txt"
    html_path.write_text(result.rendered.html, encoding="utf-8")
    text_path.write_text(result.rendered.text, encoding="utf-8")
    click.echo(f"subject: {result.rendered.subject}")
    if result.matched:
        click.echo(f"{result.matched} papers matched, {result.shown} in the email")
    else:
        click.echo("nothing matched: this is the note sent to subscribers who asked for one")
    click.echo(str(html_path))
    click.echo(str(text_path))
