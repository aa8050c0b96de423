"""JSON lines in the project's own paper format: one object per line (see samples/papers.jsonl).

Fields: id (arXiv id), title, abstract, authors (list of names), categories, published_at
(ISO-8601), upvotes, github_repo, project_page, keywords. id and title are required.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from digest.errors import SourceError
from digest.sources.base import (
    FetchResult,
    OptionalCount,
    OptionalInstant,
    OptionalText,
    OptionalTexts,
    PaperRecord,
    Shape,
    Texts,
    check_shape,
    clean_text,
    http_url_or_none,
    normalise_arxiv_id,
    parse_each,
    texts,
)


class Line(Shape):
    id: str
    title: str | None = None
    abstract: str | None = None
    authors: Texts | None = None
    categories: OptionalTexts = None
    published_at: OptionalInstant = None
    upvotes: OptionalCount = None
    github_repo: OptionalText = None
    project_page: OptionalText = None
    keywords: OptionalTexts = None


def parse_line(text: str, ignored: list[str]) -> PaperRecord:
    try:
        obj = json.loads(text)  # a JSONDecodeError is a ValueError: the line is skipped
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return parse_record(obj, ignored)


def parse_record(obj: object, ignored: list[str] | None = None) -> PaperRecord:
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    line = check_shape(Line, obj, [] if ignored is None else ignored)
    arxiv_id = normalise_arxiv_id(line.id)
    if not arxiv_id:
        raise ValueError(f"id {line.id!r} is not an arXiv id")
    title = clean_text(line.title)
    if not title:
        raise ValueError(f"{arxiv_id}: no title")
    return PaperRecord(
        id=arxiv_id,
        title=title,
        abstract=clean_text(line.abstract),
        authors=texts(line.authors),
        categories=texts(line.categories),
        published_at=line.published_at,
        upvotes=line.upvotes,
        github_repo=http_url_or_none(line.github_repo),
        project_page=http_url_or_none(line.project_page),
        keywords=texts(line.keywords),
        source="file",
    )


class FileSource:
    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def fetch(self, day: date) -> FetchResult:
        result = FetchResult(f"file:{self.path}")
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"file:{self.path}: cannot read ({exc.__class__.__name__}: {exc})") from None
        numbered = ((f"{self.path}:{n}", line) for n, line in enumerate(lines, 1) if line.strip())
        result.add(*parse_each(numbered, parse_line))
        if result.skipped and not result.papers:
            raise SourceError(f"file:{self.path}: no line could be read ({result.skipped[0]})")
        return result
