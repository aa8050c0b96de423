"""Working links never reach the access log."""

from __future__ import annotations

import logging

from digest.web.app import RedactTokens


def access_record(path: str) -> logging.LogRecord:
    # The shape uvicorn's access logger uses: a format string and (client, method, path, version, status).
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "POST", path, "1.1", 200), None)


def test_tokens_in_access_log_lines_are_replaced():
    for path, shown in [
        ("/unsubscribe/WzEsMSwidW5zdWJzY3JpYmUiXQ.awe4oQ.abc", "/unsubscribe/[token]"),
        ("/settings/WzEsMSwic2V0dGluZ3MiXQ.awe4oQ.abc/preview?topics=x", "/settings/[token]/preview?topics=x"),
        ("/confirm/WzEsMSwiY29uZmlybSJd.x.y", "/confirm/[token]"),
        ("/digest/2026-11-26/WzEsMSwidmlldyJd.a.b", "/digest/2026-11-26/[token]"),
        ("/", "/"),
    ]:
        record = access_record(path)
        assert RedactTokens().filter(record)
        assert record.getMessage() == f'127.0.0.1:5000 - "POST {shown} HTTP/1.1" 200'


def test_the_app_installs_the_filter(app):
    assert any(isinstance(f, RedactTokens) for f in logging.getLogger("uvicorn.access").filters)
