"""App factory: templates, static files, security headers, CSRF, rate limits, sessions."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from digest import operations
from digest.config import LOCAL_HOSTS, REPO_ROOT, Settings
from digest.db import ensure_schema, make_engine, session_factory
from digest.tokens import ExpiredToken
from digest.web import admin, ops, routes
from digest.web.capacity import Capacity
from digest.web.csrf import COOKIE, CsrfProtect
from digest.web.deps import LinkRefused
from digest.web.ratelimit import RateLimiter

TEMPLATES = REPO_ROOT / "templates" / "web"
STATIC = TEMPLATES / "static"

# Pages carry signed tokens in their URLs: never cache them, never send them on as a Referer to
# the arXiv or Hugging Face links on the page, never frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class OwnHost(TrustedHostMiddleware):
    """Requests for this site's own host only (DIGEST_BASE_URL's, or this machine's names: the
    quick start and a probe on the machine itself): a foreign Host header gets 400, so no URL the
    app might build from it can point elsewhere. Health checks and metrics answer whatever the
    Host (load balancers and scrapers ask by address)."""

    OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapers (metrics ask a token)

    def __init__(self, app, settings: Settings) -> None:
        host = urlsplit(settings.base_url).hostname or "localhost"
        super().__init__(app, allowed_hosts=sorted({host, *LOCAL_HOSTS}), www_redirect=False)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class RedactTokens(logging.Filter):
    """Access logs must not hold working links: whoever reads the log could unsubscribe people."""

    PATTERN = re.compile(r"/(confirm|settings|unsubscribe|feedback|digest/\d{4}-\d{2}-\d{2})/[^\s/?\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"/\1/[token]", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"/\1/[token]", record.msg)
        return True


def install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in access.filters):
        access.addFilter(RedactTokens())


BAD_LINK = (
    "It may have been changed, cut short by your mail program, or replaced by a newer one. "
    "Use the link in your most recent email."
)

# How form fields are named in error messages: the words on the page, not the column names.
FIELD_LABELS = {
    "email": "Email address", "topics": "Topics", "timezone": "Time zone", "hour": "Delivery hour",
    "max_papers": "Papers per email", "frequency": "Frequency", "weekday": "Weekly on", "delete": "Delete",
}


def template_environment() -> Environment:
    # Autoescape on for every template: addresses, topics and paper titles are untrusted text.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Pages:
    """Renders a template into a response and keeps the CSRF cookie set."""

    def __init__(self, env: Environment, csrf: CsrfProtect, settings: Settings) -> None:
        self.env = env
        self.csrf = csrf
        self.settings = settings

    def render(self, request: Request, name: str, context: dict | None = None, status: int = 200, headers=None):
        cookie = request.cookies.get(COOKIE)
        fresh = cookie is None or len(cookie) > 64
        value = self.csrf.new_value() if fresh else cookie
        html = self.env.get_template(name).render(
            request=request, csrf_token=self.csrf.form_token(value), settings=self.settings, labels=FIELD_LABELS,
            **(context or {}),
        )
        response = HTMLResponse(html, status_code=status, headers=headers)
        if fresh:
            self.csrf.set_cookie(response, value)
        return response

    def error(self, request: Request, status: int, title: str, message: str, headers=None):
        return self.render(request, "error.html", {"title": title, "message": message}, status=status, headers=headers)


def create_app(
    settings: Settings,
    *,
    sessions: Callable[[], Session] | None = None,
    limiter: RateLimiter | None = None,
    transport=None,
) -> FastAPI:
    """`sessions` returns a new Session (tests pass theirs); `transport` overrides open_transport."""
    if sessions is None:
        engine = make_engine(settings.database_url)
        ensure_schema(engine)
        sessions = session_factory(engine)

    install_log_redaction()
    # No automatic slash redirects: Starlette builds them from the Host header (routes.py has one
    # built from DIGEST_BASE_URL).
    app = FastAPI(title="Daily Papers Digest", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.transport = transport
    app.state.limiter = limiter or RateLimiter(settings.subscribe_rate_limit, window=3600, redis_url=settings.broker_url)
    app.state.capacity = Capacity(concurrent=1, waiting=16)  # requests that match topics, at a time
    app.state.pages = Pages(template_environment(), CsrfProtect(settings.secret_keys, settings.base_url.startswith("https")), settings)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404 and request.method in ("GET", "HEAD") and request.url.path.endswith("/") \
                and request.url.path != "/":
            # A link with a slash added (some mail programs add one): the same page, at an address
            # built from DIGEST_BASE_URL, never from the Host header. Only paths nothing matched.
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"{settings.base_url}{request.url.path.rstrip('/')}{query}", status_code=307)
        titles = {404: "Page not found", 405: "Not allowed"}
        return app.state.pages.error(
            request, exc.status_code, titles.get(exc.status_code, "Something is wrong"), str(exc.detail or "")
        )

    @app.exception_handler(LinkRefused)
    async def link_refused(request: Request, exc: LinkRefused):
        if exc.as_json:
            return JSONResponse({"error": "invalid link"}, status_code=400)
        if isinstance(exc.cause, ExpiredToken):
            return app.state.pages.error(
                request, 410, "This link has expired", "Confirmation links work for 7 days. Subscribe again to get a new one."
            )
        return app.state.pages.error(request, 400, "This link is not valid", BAD_LINK)

    app.add_middleware(OwnHost, settings=settings)
    if settings.trusted_proxy_list:
        # The client address (rate limits) from X-Forwarded-For, only when a trusted proxy sent it;
        # here rather than in `digest web`, so that any ASGI server behaves the same.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(routes.router)
    app.include_router(ops.router)
    admin.install(app)
    operations.count_into_store(settings, sessions)
    return app

