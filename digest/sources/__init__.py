"""Paper sources: each turns one service's answers into PaperRecord values.

A source never writes to the store; ingest.py merges what the sources return.
"""

from __future__ import annotations

from datetime import date

import httpx

from digest.config import Settings, SourceSpec
from digest.sources.base import FetchResult, PaperRecord, Source

__all__ = ["FetchResult", "PaperRecord", "Source", "make_source"]


def make_source(spec: SourceSpec, settings: Settings, client: httpx.Client) -> Source:
    from digest.sources.arxiv import ArxivSource
    from digest.sources.file import FileSource
    from digest.sources.hf import HuggingFaceSource

    if spec.kind == "hf":
        return HuggingFaceSource(client, settings.hf_api_url)
    if spec.kind == "arxiv":
        return ArxivSource(client, settings.arxiv_api_url, spec.categories)
    return FileSource(spec.argument)


def fetch_all(specs, settings: Settings, day: date, client: httpx.Client) -> list[FetchResult]:
    return [make_source(spec, settings, client).fetch(day) for spec in specs]
