"""One typed Settings object read from DIGEST_* variables and validated before anything runs.

A bad value stops the process with one line naming the variable (ConfigError), never a traceback
from deep inside a request: operators read these messages at 3 a.m.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from digest.errors import ConfigError

ARXIV_CATEGORY = re.compile(r"^[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?$")
# The key the quick start signs with: public (it is in this file), so it is refused unless the
# links point at this machine (DIGEST_BASE_URL on localhost).
DEVELOPMENT_SECRET_KEY = "insecure-development-key-set-DIGEST_SECRET_KEY"
MIN_SECRET_KEY_BYTES = 32  # an HMAC-SHA1 key; shorter keys can be guessed offline from one link
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PAPERS = REPO_ROOT / "samples" / "papers.jsonl"


@dataclass(frozen=True)
class SourceSpec:
    """One entry of DIGEST_SOURCES: `hf`, `arxiv:cs.LG+cs.CL` or `file:PATH`."""

    kind: Literal["hf", "arxiv", "file"]
    argument: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.argument.split("+")) if self.kind == "arxiv" else ()


@dataclass(frozen=True)
class SmtpSettings:
    """DIGEST_SMTP_URL taken apart: smtp:// uses STARTTLS when offered, smtps:// is TLS from the start."""

    host: str
    port: int
    ssl: bool
    starttls: Literal["auto", "require", "off"]
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # never print the password into a log
        return f"SmtpSettings(host={self.host!r}, port={self.port}, ssl={self.ssl}, user={self.username!r})"


def parse_sources(value: str) -> tuple[SourceSpec, ...]:
    specs: list[SourceSpec] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        kind, _, argument = item.partition(":")
        if kind == "hf":
            if argument:
                raise ValueError(f"'hf' takes no argument, got {item!r}")
            specs.append(SourceSpec("hf"))
        elif kind == "arxiv":
            categories = [c for c in argument.split("+") if c]
            if not categories:
                raise ValueError("'arxiv' needs categories, e.g. arxiv:cs.LG+cs.CL")
            bad = [c for c in categories if not ARXIV_CATEGORY.match(c)]
            if bad:
                raise ValueError(f"not an arXiv category: {', '.join(bad)}")
            specs.append(SourceSpec("arxiv", "+".join(categories)))
        elif kind == "file":
            if not argument:
                raise ValueError("'file' needs a path, e.g. file:papers.jsonl")
            specs.append(SourceSpec("file", argument))
        else:
            raise ValueError(f"unknown source {kind!r} (known: hf, arxiv:CATS, file:PATH)")
    if not specs:
        raise ValueError("no source given")
    return tuple(specs)


def parse_smtp_url(value: str) -> SmtpSettings:
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls", "auto")
    if starttls not in ("auto", "require", "off"):
        raise ValueError("starttls= must be auto, require or off")
    ssl = parts.scheme == "smtps"
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if ssl else 587),
        ssl=ssl,
        starttls="off" if ssl else starttls,  # type: ignore[arg-type]
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "sqlite"):
        raise ValueError(f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
    return value


def _split_keys(value: str) -> list[str]:
    """A comma-separated setting's items."""
    return [key.strip() for key in value.split(",") if key.strip()]


def is_local(url: str | None) -> bool:
    """A base URL that only this machine can open: the development key is allowed there."""
    return (urlsplit(url or "").hostname or "") in LOCAL_HOSTS


def _check_secret_key(key: str, base_url: str | None, what: str = "") -> str:
    advice = "set a random value of at least 32 bytes, e.g. $(openssl rand -hex 32)"
    what = f"{what} " if what else ""
    if not key:
        raise ValueError(f"is empty: {advice}")
    if key == DEVELOPMENT_SECRET_KEY:
        if is_local(base_url):
            return key
        raise ValueError(f"{what}is the public development key, allowed only while DIGEST_BASE_URL is on "
                         f"localhost (it is {base_url}): {advice}")
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        raise ValueError(f"{what}is {len(key.encode())} bytes long, too short to keep links unforgeable: {advice}")
    return key


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGEST_", frozen=True, extra="ignore")

    database_url: str = "sqlite:///digest.db"
    broker_url: str = "redis://localhost:6379/0"
    smtp_url: str | None = None
    outbox_dir: Path = Path("outbox")
    base_url: str = "http://localhost:8000"
    # Signs every link; checked even when unset (the default is public: see _check_secret_key).
    secret_key: str = Field(DEVELOPMENT_SECRET_KEY, validate_default=True)
    sender: str = Field("Daily Papers Digest <digest@localhost>", validation_alias=AliasChoices("DIGEST_FROM"))
    sources: str = "hf"
    hf_api_url: str = "https://huggingface.co"
    arxiv_api_url: str = "https://export.arxiv.org"
    # The footer line that says who sends the digest and how to reach them (anti-spam laws ask for it).
    postal_address: str = "Daily Papers Digest, run by the operator of this server"
    list_id: str = ""
    unsubscribe_mailto: str = ""
    smtp_rate: float = Field(50.0, gt=0)
    dkim_key_file: Path | None = None
    dkim_selector: str = "digest"
    bounce_imap_url: str | None = None
    # Delivery (docs/delivery.md): subscribers per send_batch task, seconds after which a row
    # stuck in `sending` (its worker died) is sent again, seconds between same-run tries after a 4xx.
    batch_size: int = Field(100, ge=1, le=10_000)
    sending_timeout: float = Field(900.0, gt=0)
    smtp_retry_delay: float = Field(2.0, ge=0)
    http_timeout: float = Field(20.0, gt=0)
    http_attempts: int = Field(4, ge=1, le=10)  # per request to a paper source
    http_backoff: float = Field(2.0, ge=0, le=60)  # seconds before the 2nd try; doubles after
    # Celery queue; tests give each run its own so parallel runs on one Redis never mix.
    queue: str = Field("digest", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "DIGEST_PORT"))
    # Subscribe-form posts one client address may make per hour before it gets 429 (counted in
    # Redis at DIGEST_BROKER_URL when reachable, else in the web process).
    subscribe_rate_limit: int = Field(20, ge=1)
    # Paper sources (digest/sources/http.py): httpx's timeout is per read, so a server trickling a
    # byte a second evades it. Seconds for one request in all, seconds for one source's whole fetch
    # (retries and waits included; the Celery fetch task's time limits follow from it), and the
    # largest answer read, in bytes (a real page is under 1 MB).
    http_deadline: float = Field(60.0, gt=0, le=3600)
    fetch_deadline: float = Field(600.0, gt=0, le=3600)
    http_max_bytes: int = Field(10_000_000, gt=0)
    # Operations (docs/operations.md). /metrics answers only with metrics=1, and asks for the token
    # as a bearer token when one is set; each process writes its counters to the store this often.
    metrics: bool = False
    metrics_token: str = Field("", max_length=500)
    metrics_flush_interval: float = Field(10.0, gt=0, le=3600)
    log_format: Literal["text", "json"] = "text"
    # The admin console at /admin exists only when both are set.
    admin_user: str = Field("", max_length=200)
    admin_password: str = Field("", max_length=1000)
    admin_session_hours: float = Field(8.0, gt=0, le=24 * 30)
    admin_login_rate_limit: int = Field(10, ge=1)  # login posts per client address per 15 minutes
    # An SMTP server that cannot be reached is waited for inside the run or task, tried again
    # 1 s, 2 s, 4 s ... apart (at most smtp_outage_retry), for at most smtp_outage_wait seconds;
    # after that the rows wait and a Celery task retries smtp_outage_retry seconds later.
    smtp_outage_wait: float = Field(300.0, ge=0, le=3600)
    smtp_outage_retry: float = Field(10.0, gt=0, le=300)
    # A batch whose database went away holds the outcomes of the messages already accepted and
    # sends nothing more while it waits this long for the database (at most a third of
    # sending_timeout); then it gives up and those rows are sent again after sending_timeout.
    database_outage_wait: float = Field(120.0, ge=0, le=3600)
    # Earlier secret keys, comma-separated: links signed with them still verify; new links are
    # signed with DIGEST_SECRET_KEY alone. For rotating the key without breaking sent links.
    secret_key_fallbacks: str = ""
    # The reverse proxies whose X-Forwarded-For names the client (comma-separated addresses or
    # networks, `*` for every peer); none by default: the connecting address is the client.
    trusted_proxies: str = ""
    # Connections (with the requests in flight) one `digest web` process holds before answering
    # 503 at once: a flood fails fast instead of piling up.
    web_max_connections: int = Field(1000, ge=1)
    # Live previews (and settings pages, which show one) per minute, per link and per client address.
    preview_rate_limit: int = Field(60, ge=1)
    # "More like this" / "Less like this" presses (and their undo) per minute, per client address.
    feedback_rate_limit: int = Field(60, ge=1)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(f"must be sqlite:///PATH or postgresql://..., got {value!r}")
        if scheme == "postgres" or value.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; the bare scheme would ask SQLAlchemy for psycopg2.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        return _check_url(value, ("redis", "rediss", "amqp", "memory"))

    @field_validator("base_url", "hf_api_url", "arxiv_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value, ("http", "https")).rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str, info: ValidationInfo) -> str:
        return _check_secret_key(value, info.data.get("base_url"))

    @field_validator("secret_key_fallbacks")
    @classmethod
    def _secret_key_fallbacks(cls, value: str, info: ValidationInfo) -> str:
        for key in _split_keys(value):
            _check_secret_key(key, info.data.get("base_url"), "an old key")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for item in _split_keys(value):
            if item != "*":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value:
            parse_smtp_url(value)
        return value or None

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: str) -> str:
        parse_sources(value)
        return value

    @field_validator("metrics_token", "admin_user")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(not 0x21 <= ord(c) <= 0x7E for c in value):
            raise ValueError("must be printable ASCII without spaces")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if "\r" in value or "\n" in value or "@" not in value:
            raise ValueError("must be one line with an address, e.g. 'Papers <digest@example.org>'")
        return value

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Every key a link may be signed with, oldest first: itsdangerous signs with the last and
        verifies with each, newest first."""
        return (*reversed(_split_keys(self.secret_key_fallbacks)), self.secret_key)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return _split_keys(self.trusted_proxies)

    @property
    def source_specs(self) -> tuple[SourceSpec, ...]:
        return parse_sources(self.sources)

    @property
    def smtp(self) -> SmtpSettings | None:
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def sender_domain(self) -> str:
        return self.sender.rsplit("@", 1)[1].strip("> ")

    @property
    def admin_enabled(self) -> bool:
        return bool(self.admin_user and self.admin_password)

    @property
    def broker_configured(self) -> bool:
        """DIGEST_BROKER_URL was given (not the default a laptop without Redis never uses)."""
        return "broker_url" in self.model_fields_set and not self.broker_url.startswith("memory")


def _env_name(loc: tuple) -> str:
    field = str(loc[0]) if loc else "?"
    if field.startswith("DIGEST_") or field == "PORT":  # fields read through an alias
        return field
    return "DIGEST_" + field.upper()


def load_settings(**overrides) -> Settings:
    """Read and validate the environment; raise ConfigError with one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{_env_name(first['loc'])}: {message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
