"""Paper sources: each turns one service's answers into PaperRecord values.

A source never writes to the store; ingest.py merges what the sources return.
"""

from __future__ import annotations

import httpx

from digest.config import Settings, SourceSpec
from digest.sources.arxiv import ArxivSource
from digest.sources.base import FetchResult, PaperRecord, Source
from digest.sources.file import FileSource
from digest.sources.hf import HuggingFaceSource
from digest.sources.http import Limits

__all__ = ["FetchResult", "PaperRecord", "Source", "make_source"]


def make_source(spec: SourceSpec, settings: Settings, client: httpx.Client) -> Source:
    limits = Limits.from_settings(settings)
    retry = {"attempts": settings.http_attempts, "backoff": settings.http_backoff, "limits": limits}
    if spec.kind == "hf":
        return HuggingFaceSource(client, settings.hf_api_url, **retry)
    if spec.kind == "arxiv":
        # arXiv's terms ask for 3 s between requests whatever the back-off says.
        retry["backoff"] = max(settings.http_backoff, 3.0)
        return ArxivSource(client, settings.arxiv_api_url, spec.categories, **retry)
    return FileSource(spec.argument)

