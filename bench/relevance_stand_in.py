"""The relevance benchmark's Hugging Face: a local HTTP server answering /api/daily_papers in the
real shape (shared/sources.md) from a corpus file, one listing day at a time.

The benchmark sets `today` to the simulated day; a later day answers an empty array, as the real
API does for a day nothing was listed on yet, so no fetch can see the future. Items carry only
what Hugging Face would send: no grades, no categories (the API has none).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_LIMIT = 100  # the real API's "at most about 100"
DEFAULT_LIMIT = 50


def hf_item(paper: dict) -> dict:
    """One array item of /api/daily_papers for a corpus line (id, title, summary, authors, date,
    upvotes, github_repo)."""
    listed = f"{paper['date']}T13:00:00.000Z"
    inner = {
        "id": paper["id"],
        "authors": [{"_id": f"{n:024x}", "name": name, "hidden": False} for n, name in enumerate(paper.get("authors") or [])],
        # The corpus keeps the listing day, not the arXiv date: the listing day's midnight stands in.
        "publishedAt": f"{paper['date']}T00:00:00.000Z",
        "submittedOnDailyAt": listed,
        "title": paper["title"],
        "summary": paper.get("summary") or "",
        "upvotes": int(paper.get("upvotes") or 0),
        "discussionId": hashlib.sha1(paper["id"].encode()).hexdigest()[:24],
    }
    if paper.get("github_repo"):
        inner["githubRepo"] = paper["github_repo"]
    return {
        "paper": inner,
        "publishedAt": listed,
        "title": paper["title"],
        "summary": paper.get("summary") or "",
        "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{paper['id']}.png",
        "numComments": 0,
        "submittedBy": {"_id": "0" * 24, "fullname": "AK", "name": "akhaliq", "type": "user"},
        "isAuthorParticipating": False,
    }


class DailyPapersStandIn:
    """`with DailyPapersStandIn(papers) as hf:` serves on hf.url until the block ends."""

    def __init__(self, papers: list[dict]) -> None:
        self.days: dict[date, list[dict]] = defaultdict(list)
        self.papers: dict[str, tuple[date, dict]] = {}
        for paper in papers:  # in file order: the order of the day's listing
            day = date.fromisoformat(paper["date"])
            self.days[day].append(hf_item(paper))
            self.papers.setdefault(paper["id"], (day, self.days[day][-1]["paper"]))
        self.today: date | None = None
        self.requests = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                stand_in.requests += 1
                status, body = stand_in.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="hf-stand-in", daemon=True)

    def listed(self, day: date) -> bool:
        return self.today is not None and day <= self.today

    def answer(self, target: str) -> tuple[int, bytes]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/daily_papers":
            try:
                day = date.fromisoformat(query["date"]) if "date" in query else self.today
                page = max(0, int(query.get("p", 0)))
                limit = min(MAX_LIMIT, max(1, int(query.get("limit", DEFAULT_LIMIT))))
            except ValueError as exc:
                return 400, json.dumps({"error": str(exc)}).encode()
            items = self.days.get(day, []) if day is not None and self.listed(day) else []
            return 200, json.dumps(items[page * limit : (page + 1) * limit]).encode()
        if match := re.fullmatch(r"/api/papers/([^/]+)", url.path):
            found = self.papers.get(match.group(1))
            if found and self.listed(found[0]):
                return 200, json.dumps(found[1]).encode()
        return 404, b'{"error":"Not Found"}'

    def __enter__(self) -> DailyPapersStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
