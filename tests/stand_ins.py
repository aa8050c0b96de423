"""A local stand-in for the Hugging Face Daily Papers API: a real HTTP server on 127.0.0.1,
answering in the real shape (see shared/sources.md), with switchable faults."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.factories import hf_item


class HFStandIn:
    def __init__(self, records: list[dict]) -> None:
        self.items = [hf_item(r) for r in records]
        self.status = 200  # set to 500, 429... to make every answer fail
        self.body: bytes | None = None  # set to answer these raw bytes instead
        self.requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                stand_in.requests.append({"path": url.path, **query})
                if stand_in.status != 200:
                    self._answer(stand_in.status, b'{"error":"Internal Error"}')
                elif url.path != "/api/daily_papers":
                    self._answer(404, b'{"error":"Not found"}')
                elif stand_in.body is not None:
                    self._answer(200, stand_in.body)
                else:
                    page, limit = int(query.get("p", 0)), int(query.get("limit", 50))
                    chunk = stand_in.items[page * limit : (page + 1) * limit]
                    self._answer(200, json.dumps(chunk).encode())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HFStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
