"""Local stand-ins for the paper sources: real HTTP servers on 127.0.0.1, answering in the real
shapes (see shared/sources.md), with switchable faults."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.factories import arxiv_feed, hf_item


class LocalServer:
    """A threaded HTTP server; a subclass answers each GET in `answer`. Every request is recorded
    with its query parameters. `stopping` is set on exit, so slow answers end with the test."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                stand_in.requests.append({"path": url.path, **query})
                try:
                    stand_in.answer(self, url.path, query)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what a deadline does

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler, path: str, query: dict) -> None:
        raise NotImplementedError

    @staticmethod
    def send(handler, status: int, body: bytes, content_type: str, headers: dict | None = None, length=True) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if length:  # without it, the body ends when the connection closes (HTTP/1.0)
            handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class HFStandIn(LocalServer):
    """/api/daily_papers, paged by `p` and `limit` like Hugging Face."""

    def __init__(self, records: list[dict]) -> None:
        super().__init__()
        self.items = [hf_item(r) for r in records]
        self.status = 200  # set to 500, 429... to make every answer fail
        self.retry_after = "0"  # sent with a 429
        self.body: bytes | None = None  # set to answer these raw bytes instead
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes

    def answer(self, handler, path: str, query: dict) -> None:
        if self.status != 200:
            headers = {"Retry-After": self.retry_after} if self.status == 429 else {}
            self._json(handler, self.status, b'{"error":"Internal Error"}', headers)
        elif path != "/api/daily_papers":
            self._json(handler, 404, b'{"error":"Not found"}')
        elif self.body is not None:
            self._json(handler, 200, self.body)
        else:
            page, limit = int(query.get("p", 0)), int(query.get("limit", 50))
            self._json(handler, 200, json.dumps(self.items[page * limit : (page + 1) * limit]).encode())

    def _json(self, handler, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send(handler, status, body, "application/json; charset=utf-8", headers, self.send_length)


class ArxivStandIn(LocalServer):
    """/api/query answering Atom feeds. `total` is what the feed claims (default: the truth);
    `ignore_start` answers the first page whatever `start` asks, as a broken mirror would."""

    def __init__(self, records: list[dict], total: int | None = None, ignore_start: bool = False) -> None:
        super().__init__()
        self.records = records
        self.total = total
        self.ignore_start = ignore_start

    def answer(self, handler, path: str, query: dict) -> None:
        start = 0 if self.ignore_start else int(query.get("start", 0))
        size = int(query.get("max_results", 10))
        total = len(self.records) if self.total is None else self.total
        body = arxiv_feed(self.records[start : start + size], total, start, size)
        self.send(handler, 200, body, "application/atom+xml; charset=utf-8")


class TrickleServer(LocalServer):
    """Answers `body` (with a correct Content-Length) one byte every `interval` seconds: each read
    gets a byte long before any read timeout, so only a total deadline ends the request.
    With `trickle_headers` the status line and headers come byte by byte too."""

    def __init__(self, body: bytes, interval: float = 1.0, trickle_headers: bool = False) -> None:
        super().__init__()
        self.body = body
        self.interval = interval
        self.trickle_headers = trickle_headers

    def answer(self, handler, path: str, query: dict) -> None:
        head = (
            f"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n"
        ).encode()
        if not self.trickle_headers:
            handler.wfile.write(head)
            head = b""
        for byte in head + self.body:
            if self.stopping.wait(self.interval):
                return
            handler.wfile.write(bytes([byte]))
