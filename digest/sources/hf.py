"""Hugging Face Daily Papers: GET /api/daily_papers?date=YYYY-MM-DD, paged until an empty page."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date

import httpx

from digest.errors import SourceError
from digest.sources.base import (
    FetchResult,
    PaperRecord,
    clean_text,
    http_url_or_none,
    normalise_arxiv_id,
    parse_datetime,
    parse_each,
)
from digest.sources.http import Fetcher

PAGE_SIZE = 100
MAX_PAGES = 50  # 5,000 papers a day is far past any real day: a bound, not a limit


def parse_item(item: object) -> PaperRecord:
    """One array item -> PaperRecord; ValueError names what is missing."""
    if not isinstance(item, dict):
        raise ValueError("item is not an object")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ValueError("item has no 'paper' object")
    arxiv_id = normalise_arxiv_id(paper.get("id"))
    if not arxiv_id:
        raise ValueError(f"paper.id {paper.get('id')!r} is not an arXiv id")
    title = clean_text(paper.get("title") or item.get("title"))
    if not title:
        raise ValueError(f"{arxiv_id}: no title")
    authors = [
        clean_text(a.get("name"))
        for a in paper.get("authors") or []
        if isinstance(a, dict) and clean_text(a.get("name"))
    ]
    upvotes = paper.get("upvotes")
    keywords = paper.get("ai_keywords") or []
    return PaperRecord(
        id=arxiv_id,
        title=title,
        abstract=clean_text(paper.get("summary") or item.get("summary")),
        authors=authors,
        published_at=parse_datetime(paper.get("publishedAt")),
        upvotes=upvotes if isinstance(upvotes, int) and upvotes >= 0 else None,
        github_repo=http_url_or_none(paper.get("githubRepo")),
        project_page=http_url_or_none(paper.get("projectPage")),
        keywords=[clean_text(k) for k in keywords if isinstance(k, str)] if isinstance(keywords, list) else [],
        source="hf",
    )


def parse_page(body: bytes, url: str) -> tuple[list[PaperRecord], list[str]]:
    try:
        items = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"hf: {url} did not answer JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(items, list):
        raise SourceError(f"hf: {url} answered a {type(items).__name__}, expected a list of papers")
    return parse_each(items, parse_item, "hf item")


class HuggingFaceSource:
    name = "hf"

    def __init__(
        self,
        client: httpx.Client,
        api_url: str,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        backoff: float = 2.0,
    ) -> None:
        self.url = f"{api_url}/api/daily_papers"
        self.fetcher = Fetcher(client, "hf", attempts=attempts, backoff=backoff, sleep=sleep)

    def fetch(self, day: date) -> FetchResult:
        result = FetchResult(self.name)
        seen: set[str] = set()
        for page in range(MAX_PAGES):
            response = self.fetcher.get(self.url, {"date": day.isoformat(), "p": page, "limit": PAGE_SIZE})
            papers, skipped = parse_page(response.content, self.url)
            result.skipped.extend(skipped)
            fresh = [p for p in papers if p.id not in seen]
            if not papers and not skipped:
                break
            if papers and not fresh:
                break  # a server that ignores `p` would otherwise repeat page 0 forever
            seen.update(p.id for p in fresh)
            result.papers.extend(fresh)
        return result
