"""Hugging Face Daily Papers: GET /api/daily_papers?date=YYYY-MM-DD, paged until an empty page."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from typing import Annotated

import httpx

from digest.errors import SourceError
from digest.sources.base import (
    FetchResult,
    Ignorable,
    OptionalCount,
    OptionalInstant,
    OptionalText,
    OptionalTexts,
    PaperRecord,
    Shape,
    check_shape,
    clean_text,
    http_url_or_none,
    normalise_arxiv_id,
    parse_each,
    texts,
)
from digest.sources.http import Fetcher, Limits

PAGE_SIZE = 100
MAX_PAGES = 50  # 5,000 papers a day is far past any real day: a bound, not a limit


class HFAuthor(Shape):
    name: str | None = None


class HFPaper(Shape):
    """`paper` of an /api/daily_papers item (shared/sources.md); only what a digest uses."""

    id: str
    title: str | None = None
    summary: str | None = None
    authors: list[Annotated[HFAuthor | None, Ignorable]] | None = None
    publishedAt: OptionalInstant = None  # noqa: N815 (the API's names)
    upvotes: OptionalCount = None
    githubRepo: OptionalText = None  # noqa: N815
    projectPage: OptionalText = None  # noqa: N815
    ai_keywords: OptionalTexts = None


class HFItem(Shape):
    paper: HFPaper
    title: str | None = None  # copies of the paper's, used when the paper lacks them
    summary: str | None = None


def parse_item(raw: object, ignored: list[str]) -> PaperRecord:
    """One array item -> PaperRecord; ValueError (a ValidationError included) says what is wrong."""
    item = check_shape(HFItem, raw, ignored)
    paper = item.paper
    arxiv_id = normalise_arxiv_id(paper.id)
    if not arxiv_id:
        raise ValueError(f"paper.id {paper.id!r} is not an arXiv id")
    title = clean_text(paper.title or item.title)
    if not title:
        raise ValueError(f"{arxiv_id}: no title")
    return PaperRecord(
        id=arxiv_id,
        title=title,
        abstract=clean_text(paper.summary or item.summary),
        authors=texts(a.name for a in paper.authors or [] if a is not None),
        published_at=paper.publishedAt,
        upvotes=paper.upvotes,
        github_repo=http_url_or_none(paper.githubRepo),
        project_page=http_url_or_none(paper.projectPage),
        keywords=texts(paper.ai_keywords),
        source="hf",
    )


def parse_page(body: bytes, url: str) -> tuple[list[PaperRecord], list[str], list[str]]:
    try:
        items = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"hf: {url} did not answer JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(items, list):
        raise SourceError(f"hf: {url} answered a {type(items).__name__}, expected a list of papers")
    return parse_each(((f"hf item {n}", item) for n, item in enumerate(items)), parse_item)


class HuggingFaceSource:
    name = "hf"

    def __init__(
        self,
        client: httpx.Client,
        api_url: str,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        backoff: float = 2.0,
        limits: Limits = Limits(),
    ) -> None:
        self.url = f"{api_url}/api/daily_papers"
        self.fetcher = Fetcher(client, "hf", attempts=attempts, backoff=backoff, sleep=sleep, limits=limits)

    def fetch(self, day: date) -> FetchResult:
        result = FetchResult(self.name)
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            body = self.fetcher.get(self.url, {"date": day.isoformat(), "p": page, "limit": PAGE_SIZE})
            papers, skipped, ignored = parse_page(body, self.url)
            fresh = [p for p in papers if p.id not in seen]
            if not papers and not skipped:
                break
            if papers and not fresh:
                break  # a server that ignores `p` would otherwise repeat page 0 forever
            seen.update(p.id for p in fresh)
            result.add(fresh, skipped, ignored)
        return result
