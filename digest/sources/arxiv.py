"""arXiv API: papers submitted to the given categories in the two days up to the fetch date, and
papers asked for by id (the "Papers you like" a reader types).

The API matches a category whether it is the paper's primary one or a cross-list, so a digest
gets new and cross-listed papers. arXiv asks for one request every 3 seconds: the Fetcher keeps
that interval between pages, and between the batches of a lookup by id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from xml.etree.ElementTree import Element, ParseError

import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from digest.errors import SourceError
from digest.sources.base import (
    FetchResult,
    PaperRecord,
    clean_text,
    normalise_arxiv_id,
    parse_datetime,
    parse_each,
    texts,
)
from digest.sources.http import Fetcher, Limits

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
PAGE_SIZE = 200
# arXiv receives about 1,000 to 1,500 new submissions a weekday in all its categories together
# (about 24,000 a month in 2024, by its own statistics), and the query covers two days: 5,000
# results is past any real answer, even for every category at once. A server reporting more (the
# API's own ceiling is 30,000) or repeating pages is broken, and must not cost hundreds of requests.
MAX_PAGES = 25
MAX_RESULTS = PAGE_SIZE * MAX_PAGES
REQUEST_INTERVAL = 3.0
# Ids per lookup request: the settings page takes at most 50 lines, so one request a save; the URL
# stays short (50 ids are about 600 characters).
ID_BATCH = 50


def search_query(categories: tuple[str, ...], day: date) -> str:
    cats = " OR ".join(f"cat:{c}" for c in categories)
    start = (day - timedelta(days=1)).strftime("%Y%m%d0000")
    end = day.strftime("%Y%m%d2359")
    return f"({cats}) AND submittedDate:[{start} TO {end}]"


def _text(entry: Element, path: str) -> str:
    node = entry.find(path, NS)
    return clean_text(node.text) if node is not None and node.text else ""


def parse_entry(entry: Element, ignored: list[str]) -> PaperRecord:
    raw_id = _text(entry, "atom:id")
    arxiv_id = normalise_arxiv_id(raw_id)
    if not arxiv_id:
        raise ValueError(f"entry id {raw_id!r} is not an arXiv id")
    title = _text(entry, "atom:title")
    if not title:
        raise ValueError(f"{arxiv_id}: no title")
    nodes = [entry.find("arxiv:primary_category", NS), *entry.findall("atom:category", NS)]
    categories = list(dict.fromkeys(texts(node.get("term") for node in nodes if node is not None)))
    return PaperRecord(
        id=arxiv_id,
        title=title,
        abstract=_text(entry, "atom:summary"),
        authors=texts(n.text for n in entry.findall("atom:author/atom:name", NS)),
        categories=categories,
        published_at=parse_datetime(_text(entry, "atom:published")),
        source="arxiv",
    )


def parse_feed(body: bytes, url: str) -> tuple[list[PaperRecord], list[str], int]:
    """Return (papers, skipped, total results); raise SourceError for an unreadable or error feed.
    Entries are XML text, so no field can have a wrong type: an entry is skipped only for a
    missing id or title."""
    try:
        root = ElementTree.fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise SourceError(f"arxiv: {url} did not answer a readable Atom feed ({exc})") from None
    if root.tag != f"{{{NS['atom']}}}feed":
        raise SourceError(f"arxiv: {url} answered <{root.tag}>, expected an Atom feed")
    entries = root.findall("atom:entry", NS)
    if len(entries) == 1 and "/api/errors" in _text(entries[0], "atom:id"):
        raise SourceError(f"arxiv: the API refused the query: {_text(entries[0], 'atom:summary')}")
    total_text = _text(root, "opensearch:totalResults")
    # Longer than 12 digits is no count (and int() refuses 4,300 digits): read it as "this page".
    total = int(total_text) if total_text.isascii() and total_text.isdigit() and len(total_text) <= 12 else len(entries)
    papers, skipped, _ = parse_each(((f"arxiv entry {n}", e) for n, e in enumerate(entries)), parse_entry)
    return papers, skipped, total


class ArxivSource:
    name = "arxiv"

    def __init__(
        self,
        client: httpx.Client,
        api_url: str,
        categories: tuple[str, ...],
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        backoff: float = REQUEST_INTERVAL,
        limits: Limits = Limits(),
    ) -> None:
        self.url = f"{api_url}/api/query"
        self.categories = categories
        self.fetcher = Fetcher(
            client, "arxiv", attempts=attempts, backoff=backoff, min_interval=REQUEST_INTERVAL, sleep=sleep, limits=limits
        )

    def fetch(self, day: date) -> FetchResult:
        result = FetchResult(f"arxiv:{'+'.join(self.categories)}")
        query = search_query(self.categories, day)
        seen: set[str] = set()
        start = 0
        for _ in range(MAX_PAGES):
            params = {
                "search_query": query,
                "start": start,
                "max_results": PAGE_SIZE,
                "sortBy": "submittedDate",
                "sortOrder": "descending",
            }
            papers, skipped, total = parse_feed(self.fetcher.get(self.url, params), self.url)
            if total > MAX_RESULTS:
                raise SourceError(
                    f"arxiv: the API reports {total:,} results for 2 days of {'+'.join(self.categories)}, more "
                    f"than the {MAX_RESULTS:,} a fetch reads (all of arXiv gets about 1,500 a day): nothing stored"
                )
            fresh = [p for p in papers if p.id not in seen]
            if papers and not fresh:
                result.notes.append(
                    f"the page at start={start} repeated papers already read (the server ignores `start`?): "
                    f"kept the {len(seen)} read of the {total:,} it reports"
                )
                break
            seen.update(p.id for p in fresh)
            result.add(fresh, skipped, [])
            start += len(papers) + len(skipped)
            if not papers and not skipped or start >= total:
                break
        return result

    def fetch_ids(self, ids: Iterable[str]) -> FetchResult:
        """The papers of these arXiv ids (without version), `ID_BATCH` a request, through the same
        Fetcher (retries, deadlines, size cap, 3 s between requests). An id arXiv does not know is
        simply absent from the result; an answer with papers nobody asked for keeps only those
        asked for (a mirror that ignores `id_list` must not fill the store)."""
        wanted = list(dict.fromkeys(ids))
        result = FetchResult("arxiv:id_list")
        asked = set(wanted)
        for start in range(0, len(wanted), ID_BATCH):
            batch = wanted[start : start + ID_BATCH]
            params = {"id_list": ",".join(batch), "start": 0, "max_results": len(batch)}
            papers, skipped, _ = parse_feed(self.fetcher.get(self.url, params), self.url)
            kept = [p for p in papers if p.id in asked]
            asked.difference_update(p.id for p in kept)
            result.add(kept, skipped, [])
        return result


def lookup_source(client: httpx.Client, settings) -> ArxivSource:
    """The arXiv source for lookups by id, with the fetch's settings: attempts, back-off (at least
    arXiv's 3 s) and limits, as `make_source` gives the arXiv source of a fetch."""
    return ArxivSource(
        client, settings.arxiv_api_url, (), attempts=settings.http_attempts,
        backoff=max(settings.http_backoff, REQUEST_INTERVAL), limits=Limits.from_settings(settings),
    )
