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
    PaperRecord,
    clean_text,
    http_url_or_none,
    normalise_arxiv_id,
    parse_datetime,
)


def parse_record(obj: object) -> PaperRecord:
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    arxiv_id = normalise_arxiv_id(obj.get("id"))
    if not arxiv_id:
        raise ValueError(f"id {obj.get('id')!r} is not an arXiv id")
    title = clean_text(obj.get("title"))
    if not title:
        raise ValueError(f"{arxiv_id}: no title")
    upvotes = obj.get("upvotes")

    def strings(key: str) -> list[str]:
        values = obj.get(key) or []
        return [clean_text(v) for v in values if isinstance(v, str) and v.strip()] if isinstance(values, list) else []

    return PaperRecord(
        id=arxiv_id,
        title=title,
        abstract=clean_text(obj.get("abstract")),
        authors=strings("authors"),
        categories=strings("categories"),
        published_at=parse_datetime(obj.get("published_at")),
        upvotes=upvotes if isinstance(upvotes, int) and upvotes >= 0 else None,
        github_repo=http_url_or_none(obj.get("github_repo")),
        project_page=http_url_or_none(obj.get("project_page")),
        keywords=strings("keywords"),
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
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                result.papers.append(parse_record(json.loads(line)))
            except (json.JSONDecodeError, ValueError) as exc:
                result.skipped.append(f"{self.path}:{number}: {exc}")
        if result.skipped and not result.papers:
            raise SourceError(f"file:{self.path}: no line could be read ({result.skipped[0]})")
        return result
