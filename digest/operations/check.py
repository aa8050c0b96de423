"""`digest check`: the configuration end to end, as a checklist with a fix for every failure.

It reads and connects, and writes and sends nothing unless asked: the database is opened only if
it exists and is never migrated; SMTP goes as far as AUTH and says QUIT; `--send-test EMAIL`
alone sends one real digest (the newest edition, for that subscriber's topics, or the demo
topics when EMAIL is no subscriber, built in a transaction that is rolled back).
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

import dkim
import dkim.crypto
import httpx
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from digest.config import Settings, SourceSpec
from digest.db import make_engine
from digest.delivery import preview_digest
from digest.demo import DEMO_TOPICS
from digest.fetch import http_client
from digest.mail import DeliveryFailure, make_message_id, message_bytes, open_transport
from digest.models import Subscriber, SubscriberStatus, Topic
from digest.operations.health import broker_problem, database_problem

DEVELOPMENT_KEY = Settings.model_fields["secret_key"].default
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
SMTP_TIMEOUT = 15.0


@dataclass
class Check:
    name: str
    ok: bool | None  # None: does not apply here (said why); never a failure
    detail: str
    fix: str = ""


@dataclass
class CheckReport:
    checks: list[Check] = field(default_factory=list)
    dkim_record: tuple[str, str] | None = None  # (DNS name, TXT value) to publish

    @property
    def ok(self) -> bool:
        return all(check.ok is not False for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.ok is False]


def is_local(settings: Settings) -> bool:
    host = (urlsplit(settings.base_url).hostname or "").lower()
    return host in LOCAL_HOSTS or host.endswith(".localhost")


# ---------------------------------------------------------------- configuration


def check_base_url(settings: Settings) -> Check:
    parts = urlsplit(settings.base_url)
    if is_local(settings):
        return Check("base URL", True, f"{settings.base_url} (this machine only: links work for no one else)")
    if parts.scheme != "https":
        return Check("base URL", False, f"{settings.base_url} is plain http on a public host: links in emails would "
                     "travel unencrypted", "set DIGEST_BASE_URL=https://… (the address readers open)")
    return Check("base URL", True, settings.base_url)


def check_secret_key(settings: Settings) -> Check:
    if settings.secret_key != DEVELOPMENT_KEY:
        return Check("secret key", True, "set (not the development key)")
    if is_local(settings):
        return Check("secret key", None, "the development key: fine on localhost, never in production")
    return Check("secret key", False, "DIGEST_SECRET_KEY is the development key: anyone could forge links",
                 "set DIGEST_SECRET_KEY=$(openssl rand -hex 32), once (changing it breaks every link sent)")


def check_sender(settings: Settings) -> Check:
    sender_domain = parseaddr(settings.sender)[1].rpartition("@")[2].lower()
    message_id_domain = make_message_id(1, date.today(), settings).rstrip(">").rpartition("@")[2].lower()
    if sender_domain != message_id_domain:
        return Check("sender domain", False, f"From is @{sender_domain}, Message-ID is @{message_id_domain}",
                     "give DIGEST_FROM an address at the domain you send for")
    if not is_local(settings) and ("." not in sender_domain or sender_domain == "localhost"):
        return Check("sender domain", False, f"{sender_domain} is not a public domain: receivers refuse such mail",
                     "set DIGEST_FROM='Papers <digest@your-domain.org>'")
    return Check("sender domain", True, f"From and Message-ID both @{sender_domain}")


# ---------------------------------------------------------------- the store and the broker


def database_engine(settings: Settings) -> Engine | None:
    """An engine, unless the database is a SQLite file that does not exist (opening it would create it)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not Path(url.database).exists():
            return None
    return make_engine(settings.database_url)


def check_database(settings: Settings, engine: Engine | None) -> Check:
    if engine is None:
        return Check("database", False, f"no database file at {make_url(settings.database_url).database}",
                     "run `digest db upgrade` (or fix DIGEST_DATABASE_URL)")
    with Session(engine) as session:
        problem = database_problem(session)
    if problem is None:
        return Check("database", True, f"answers, schema current ({engine.dialect.name})")
    fix = "run `digest db upgrade`" if "schema" in problem else "check DIGEST_DATABASE_URL and that the server runs"
    return Check("database", False, problem, fix)


def check_broker(settings: Settings) -> Check:
    if not settings.broker_configured:
        return Check("broker", None, "DIGEST_BROKER_URL not set: no Celery workers (run `digest send` from cron)")
    problem = broker_problem(settings.broker_url)
    if problem:
        return Check("broker", False, problem, "check DIGEST_BROKER_URL and that Redis runs")
    return Check("broker", True, f"answers at {urlsplit(settings.broker_url).hostname}")


# ---------------------------------------------------------------- SMTP


def _smtp_steps(settings: Settings) -> str:
    """Connect, EHLO, STARTTLS as configured, AUTH when a user is given, QUIT. Raises
    DeliveryFailure naming the step that failed; returns what was done."""
    smtp = settings.smtp
    where = f"{smtp.host}:{smtp.port}"
    step = "connect"
    try:
        if smtp.ssl:
            connection = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SMTP_TIMEOUT, context=ssl.create_default_context())
        else:
            connection = smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT)
        done = ["TLS" if smtp.ssl else "connected"]
        with connection:
            step = "EHLO"
            connection.ehlo()
            if not smtp.ssl and smtp.starttls != "off":
                if connection.has_extn("starttls"):
                    step = "STARTTLS"
                    connection.starttls(context=ssl.create_default_context())
                    connection.ehlo()
                    done.append("STARTTLS")
                elif smtp.starttls == "require":
                    raise DeliveryFailure(f"{where} offers no STARTTLS, and the URL says starttls=require")
            if smtp.username:
                step = "AUTH"
                connection.login(smtp.username, smtp.password or "")
                done.append(f"AUTH as {smtp.username}")
            elif "auth" in connection.esmtp_features:
                done.append("no AUTH (no user in the URL)")
    except DeliveryFailure:
        raise
    except smtplib.SMTPResponseException as exc:
        raise DeliveryFailure(f"{where} refused {step}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailure(f"{step} to {where} failed: {exc or type(exc).__name__}") from None
    plain = not smtp.ssl and "STARTTLS" not in done
    return f"{where}: {', '.join(done)}" + (" (not encrypted)" if plain else "")


def check_smtp(settings: Settings) -> Check:
    if settings.smtp is None:
        if is_local(settings):
            return Check("SMTP", None, f"DIGEST_SMTP_URL not set: messages are written to {settings.outbox_dir}/")
        return Check("SMTP", False, "DIGEST_SMTP_URL is not set: nothing would be delivered",
                     "set DIGEST_SMTP_URL=smtp://user:pass@host:587 (your relay's submission port)")
    try:
        return Check("SMTP", True, _smtp_steps(settings))
    except DeliveryFailure as exc:
        return Check("SMTP", False, str(exc),
                     "check the host, port, user and password in DIGEST_SMTP_URL, its ?starttls= option, "
                     "and that this machine may reach the server")


# ---------------------------------------------------------------- DKIM


def _der(tag: int, body: bytes) -> bytes:
    """One DER element (X.690): tag, length (long form past 127 bytes), body."""
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    width = (size.bit_length() + 7) // 8
    return bytes([tag, 0x80 | width]) + size.to_bytes(width, "big") + body


def _der_integer(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def dkim_public_key(private_pem: bytes) -> str:
    """The base64 SubjectPublicKeyInfo of an RSA private key: the `p=` of the DNS record (what
    `openssl rsa -pubout` prints, without needing openssl)."""
    key = dkim.crypto.parse_pem_private_key(private_pem)
    rsa_public = _der(0x30, _der_integer(key["modulus"]) + _der_integer(key["publicExponent"]))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b""))  # rsaEncryption
    return base64.b64encode(_der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public))).decode()


def check_dkim(settings: Settings, report: CheckReport) -> Check:
    if not settings.dkim_key_file:
        return Check("DKIM", None, "not signing: set DIGEST_DKIM_KEY_FILE (receivers trust signed mail more)")
    path = Path(settings.dkim_key_file)
    try:
        pem = path.read_bytes()
        record = f"v=DKIM1; k=rsa; p={dkim_public_key(pem)}"
        name = f"{settings.dkim_selector}._domainkey.{settings.sender_domain}"
        sample = f"From: {settings.sender}\r\nTo: check@{settings.sender_domain}\r\nSubject: check\r\n\r\nbody\r\n".encode()
        signed = dkim.sign(sample, settings.dkim_selector.encode(), settings.sender_domain.encode(), pem) + sample
        if not dkim.verify(signed, dnsfunc=lambda *_args, **_kw: record.encode()):
            raise ValueError("a message signed with it does not verify against its own public key")
    except (OSError, ValueError, dkim.DKIMException, dkim.crypto.UnparsableKeyError) as exc:
        return Check("DKIM", False, f"cannot sign with {path}: {exc}",
                     "point DIGEST_DKIM_KEY_FILE at a PEM RSA private key (openssl genrsa -out dkim.pem 2048)")
    report.dkim_record = (name, record)
    return Check("DKIM", True, f"key loads and signs for d={settings.sender_domain}, s={settings.dkim_selector}: "
                 f"publish the TXT record below at {name}")


# ---------------------------------------------------------------- sources


def _probe(spec: SourceSpec, settings: Settings, client: httpx.Client, day: date) -> str:
    if spec.kind == "file":
        path = Path(spec.argument)
        if not path.is_file():
            raise ValueError(f"no file {path}")
        with path.open("rb") as handle:
            handle.read(1)
        return f"{path} is readable"
    if spec.kind == "hf":
        url, params = f"{settings.hf_api_url}/api/daily_papers", {"date": day.isoformat(), "limit": 1}
    else:
        url, params = f"{settings.arxiv_api_url}/api/query", {"search_query": f"cat:{spec.categories[0]}", "max_results": 1}
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise ValueError(f"cannot reach {urlsplit(url).netloc}: {exc or type(exc).__name__}") from None
    if response.status_code != 200:
        raise ValueError(f"{urlsplit(url).netloc} answered {response.status_code}")
    return f"{urlsplit(url).netloc} answers"


def check_sources(settings: Settings, transport: httpx.BaseTransport | None = None) -> list[Check]:
    checks = []
    with http_client(settings, transport) as client:  # fetch's own timeouts
        for spec in settings.source_specs:
            try:
                checks.append(Check(f"source {spec}", True, _probe(spec, settings, client, datetime.now(timezone.utc).date())))
            except (httpx.HTTPError, OSError, ValueError) as exc:
                checks.append(Check(f"source {spec}", False, str(exc) or type(exc).__name__,
                                    "check DIGEST_SOURCES and that this machine reaches the source (proxy, firewall)"))
    return checks


# ---------------------------------------------------------------- a real test digest


def send_test_digest(settings: Settings, engine: Engine, email: str) -> Check:
    address = email.strip().lower()
    with Session(engine) as session:
        try:
            if session.scalar(select(Subscriber.id).where(Subscriber.email == address)) is None:
                session.add(Subscriber(email=address, status=SubscriberStatus.active,
                                       topics=[Topic(query=q, position=i) for i, q in enumerate(DEMO_TOPICS)]))
                session.flush()
            preview = preview_digest(session, settings, address)
        except Exception as exc:  # noqa: BLE001 - an empty store, a bad address: said as the check's failure
            return Check("test digest", False, f"could not build it: {exc}", "run `digest fetch` first")
        finally:
            session.rollback()  # the stand-in subscriber is never stored
    data = message_bytes(preview.rendered, address, settings, list_unsubscribe=False)
    try:
        with open_transport(settings) as transport:
            path = transport.send(data, parseaddr(settings.sender)[1], address, name=f"test-digest-{address}")
    except DeliveryFailure as exc:
        return Check("test digest", False, f"not sent: {exc}", "fix the SMTP check above first")
    where = f"written to {path}" if path else f"accepted by {settings.smtp.host}"
    return Check("test digest", True, f"edition {preview.edition}, {preview.shown} papers, to {address}: {where}")


def run_checks(settings: Settings, *, send_test: str | None = None,
               http_transport: httpx.BaseTransport | None = None,
               engine_for: Callable[[Settings], Engine | None] = database_engine) -> CheckReport:
    report = CheckReport()
    report.checks += [check_base_url(settings), check_secret_key(settings), check_sender(settings)]
    engine = engine_for(settings)
    try:
        database = check_database(settings, engine)
        report.checks += [database, check_broker(settings), check_smtp(settings), check_dkim(settings, report)]
        report.checks += check_sources(settings, http_transport)
        if send_test:
            report.checks.append(send_test_digest(settings, engine, send_test) if database.ok else
                                 Check("test digest", False, "not sent: the database check failed", "fix it first"))
    finally:
        if engine is not None:
            engine.dispose()
    return report
