"""digest search: the papers a topic matches, exactly as a digest would rank and explain them."""

from __future__ import annotations

import json

import click

from digest.cli import main
from digest.cli.common import sessions
from digest.read import search as search_papers
from digest.matching.results import Match
from digest.relevance import left_out_reason, reason


def _as_json(match: Match, why_left_out: str | None = None) -> dict:
    paper = match.paper
    return {
        "id": paper.id,
        "title": paper.title,
        "score": match.score,
        "matched": list(match.matched),
        "topics": list(match.topics),
        "highlights": {field: [list(span) for span in spans] for field, spans in match.highlights.items()},
        "upvotes": paper.upvotes,
        "published_at": paper.published_at.isoformat() if paper.published_at else None,
        "edition": paper.edition.isoformat() if paper.edition else None,
        "url": paper.abs_url,
        "resembles": match.resembles,
        "reason": reason(match) if why_left_out is None else f"left out: {left_out_reason(why_left_out)}",
        "left_out": why_left_out is not None,
    }


# A topic may start with an exclusion (`-video diffusion`): it must reach the parser, not click.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of lines.")
@click.option("--edition", type=click.DateTime(["%Y-%m-%d"]), help="Only papers of this edition (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(min=1), help="At most N papers (default: all).")
@click.option("--for", "reader", metavar="EMAIL", help="In this reader's own order (their marks), with each reason.")
def search(query: str, as_json: bool, edition, limit: int | None, reader: str | None) -> None:
    """Every stored paper that QUERY matches, in digest order, with the words that matched.

    QUERY uses the topic language: words (all must occur), OR, "phrases", -exclusions,
    (groups), title: abstract: author: category: fields, and prefix* (docs/query-language.md)."""
    _, factory = sessions()
    with factory() as session:
        matches = search_papers(session, query, edition.date() if edition else None, limit, reader=reader)
        if as_json:
            found = [_as_json(match) for match in matches] + [_as_json(m, title) for m, title in matches.left_out]
            click.echo(json.dumps(found, ensure_ascii=False, indent=2))
            return
        for match in matches:
            click.echo(f"{match.score:4.1f}  {match.paper.id}  {match.paper.title}")
            click.echo(f"      {reason(match)}")
        click.echo(f"{len(matches)} paper{'s' if len(matches) != 1 else ''} matched")
        if matches.left_out:
            click.echo(f"left out of this reader's digest ({len(matches.left_out)}):")
            for match, title in matches.left_out:
                click.echo(f"{match.score:4.1f}  {match.paper.id}  {match.paper.title}")
                click.echo(f"      {left_out_reason(title)}")
