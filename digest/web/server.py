"""How `digest web` serves the app: uvicorn with limits, and a deadline for request headers.

uvicorn has no timeout for reading a request's headers (its keep-alive timer restarts with every
byte): a client sending one header line every few seconds holds a connection forever, and a few
thousand of them hold the process's sockets. `with_header_deadline` closes a connection whose
next request's headers have not all arrived within HEADER_TIMEOUT seconds of the connection
opening (or of its previous answer). The rest are uvicorn's own limits. In production a reverse
proxy in front does this properly as well (docs/web.md has the nginx lines).
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from digest.config import Settings

HEADER_TIMEOUT = 10.0  # seconds for a request's headers: browsers send them at once
MAX_HEADER_BYTES = 16 * 1024  # a request line and headers larger than this are refused
KEEP_ALIVE = 5  # seconds an idle connection stays open after an answer
SWITCH_INTERVAL = 0.001  # seconds a thread holds the GIL while another waits (see serve)


def with_header_deadline(protocol: type[asyncio.Protocol], seconds: float) -> type[asyncio.Protocol]:
    """`protocol` (uvicorn's h11 or httptools one), closing connections whose headers are late.
    A request's cycle exists once its headers were read: if the cycle is still the one seen when
    the deadline was armed, no new request began in time."""

    class HeaderDeadline(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            self.loop.call_later(seconds, self._header_deadline, self.cycle)

        def _header_deadline(self, armed_with) -> None:
            if self.cycle is armed_with and not self.transport.is_closing():
                self.transport.close()

    HeaderDeadline.__name__ = f"HeaderDeadline{protocol.__name__}"
    return HeaderDeadline


def server_config(app, settings: Settings, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT,
                  log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=with_header_deadline(AutoHTTPProtocol, header_timeout),
        # Off: uvicorn would take X-Forwarded-For from any loopback peer. The app reads it only
        # from DIGEST_TRUSTED_PROXIES (digest/web/app.py).
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=settings.web_max_connections,  # beyond it new requests get 503 at once
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through the CLI's handler, in DIGEST_LOG_FORMAT
    )


def serve(app, settings: Settings, host: str, port: int) -> None:
    # While a preview matches topics (pure Python, up to its budget), a request that comes back
    # from the database or the network waits for the interpreter up to this long (default 5 ms):
    # handed over five times as often, the other pages barely notice a preview.
    sys.setswitchinterval(SWITCH_INTERVAL)
    uvicorn.Server(server_config(app, settings, host, port)).run()
