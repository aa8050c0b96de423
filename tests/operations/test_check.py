"""`digest check` as an operator runs it: against a closed SMTP port, against a real SMTP server
this test runs, with a DKIM key openssl made and the Hugging Face stand-in; each failure named
with its fix, exit 0 only when all pass, and nothing written or sent unless --send-test."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
from datetime import datetime, timedelta, timezone

import dkim
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from digest.cli import main
from digest.config import load_settings
from digest.db import alembic_config, make_engine
from digest.errors import ConfigError
from digest.models import Base, Subscriber
from digest.operations import run_checks
from digest.operations.check import check_base_url, check_database, check_secret_key, check_smtp, database_engine
from tests.conftest import TEST_SECRET_KEY
from tests.delivery.helpers import add_sample_papers
from tests.factories import sample_records
from tests.smtp_server import SmtpTestServer
from tests.stand_ins import HFStandIn


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


@pytest.fixture
def smtp():
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def hf():
    with HFStandIn(sample_records()[:3]) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    private = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    return private, base64.b64encode(public).decode()


@pytest.fixture
def production(cli_env, engine, monkeypatch, smtp, hf, dkim_key):
    """The environment of a real install, every part of it reachable."""
    values = {
        "DIGEST_BASE_URL": "https://papers.example.org",
        "DIGEST_SMTP_URL": smtp.url,
        "DIGEST_FROM": "Papers <digest@papers.example.org>",
        "DIGEST_SOURCES": "hf",
        "DIGEST_HF_API_URL": hf.url,
        "DIGEST_DKIM_KEY_FILE": str(dkim_key[0]),
        "DIGEST_DKIM_SELECTOR": "mail2026",
        "DIGEST_SECRET_KEY": "a-long-random-production-secret-for-the-tests",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def check(*args):
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


def stored_rows(engine) -> int:
    with engine.connect() as connection:
        return sum(connection.scalar(text(f"SELECT count(*) FROM {t.name}")) for t in Base.metadata.sorted_tables)


def test_check_fails_naming_smtp_against_a_closed_port(production, monkeypatch):
    monkeypatch.setenv("DIGEST_SMTP_URL", f"smtp://127.0.0.1:{closed_port()}?starttls=off")
    result = check()
    assert result.exit_code == 1
    assert re.search(r"^\[FAIL\] SMTP: connect to 127\.0\.0\.1:\d+ failed: .*refused", result.output, re.M | re.I)
    assert "fix: check the host, port, user and password in DIGEST_SMTP_URL" in result.output
    assert result.output.rstrip().endswith("1 check failed: SMTP")


def test_check_passes_against_the_test_server_and_sends_nothing(production, smtp, engine, dkim_key):
    before = stored_rows(engine)
    result = check()
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("all checks passed")
    for line in ("[ok]   database: answers, schema current (postgresql", "[ok]   broker: answers at 127.0.0.1",
                 "[ok]   base URL: https://papers.example.org", "[ok]   sender domain: From and Message-ID both @papers.example.org"):
        assert line.replace("(postgresql", f"({engine.dialect.name}") in result.output
    assert re.search(r"^\[ok\]   SMTP: 127\.0\.0\.1:\d+: connected \(not encrypted\)$", result.output, re.M)
    assert re.search(rf"^\[ok\]   source hf: 127\.0\.0\.1:\d+ answers$", result.output, re.M)
    assert smtp.handler.received == [] and smtp.handler.data_commands == 0  # connected, EHLO, QUIT: nothing sent
    assert stored_rows(engine) == before

    # The TXT record printed is the key's own public key: a message signed with the key verifies against it.
    record = re.search(r"^  mail2026\._domainkey\.papers\.example\.org\.  IN  TXT  (.+)$", result.output, re.M).group(1)
    value = "".join(re.findall(r'"([^"]*)"', record))
    assert all(len(part) <= 255 for part in re.findall(r'"([^"]*)"', record))
    assert value == f"v=DKIM1; k=rsa; p={dkim_key[1]}"
    message = b"From: digest@papers.example.org\r\nTo: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    signed = dkim.sign(message, b"mail2026", b"papers.example.org", dkim_key[0].read_bytes()) + message
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: value.encode() if name == b"mail2026._domainkey.papers.example.org." else None)


def test_send_test_sends_one_real_digest_and_stores_nothing(production, smtp, committed_db):
    with Session(committed_db) as session:
        add_sample_papers(session, (datetime.now(timezone.utc) - timedelta(days=1)).date())
        session.commit()
    before = stored_rows(committed_db)
    result = check("--send-test", "Operator@Example.org")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\[ok\]   test digest: edition \d{4}-\d\d-\d\d, \d+ papers, to operator@example.org: accepted by 127\.0\.0\.1$",
                     result.output, re.M)
    assert smtp.handler.recipients() == {"operator@example.org": 1}
    received = smtp.handler.messages_for("operator@example.org")[0]
    assert received["DKIM-Signature"] and "pre-training" in received.get_body(("plain",)).get_content().lower()
    assert stored_rows(committed_db) == before
    with Session(committed_db) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_source_that_fails_is_named(production, hf):
    hf.status = 503
    result = check()
    assert result.exit_code == 1
    assert re.search(r"^\[FAIL\] source hf: 127\.0\.0\.1:\d+ answered 503$", result.output, re.M)


def test_starttls_required_but_not_offered_fails_at_that_step(settings, smtp):
    required = settings.model_copy(update={"smtp_url": smtp.url.replace("starttls=off", "starttls=require")})
    result = check_smtp(required)
    assert result.ok is False and "offers no STARTTLS, and the URL says starttls=require" in result.detail


def test_public_http_and_the_development_key_fail_outside_localhost(settings):
    public = load_settings(base_url="http://papers.example.org", secret_key=TEST_SECRET_KEY)
    assert check_base_url(public).ok is False and "https://" in check_base_url(public).fix
    # The development key outside localhost stops every command, `digest check` included, before
    # anything runs, with one line that says how to fix it (docs/web.md, "Keys").
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY.*openssl rand"):
        load_settings(base_url="http://papers.example.org")
    laptop = load_settings(base_url="http://localhost:8000")
    assert check_base_url(laptop).ok is True and check_secret_key(laptop).ok is None  # a note, not a failure


def test_a_missing_database_file_is_reported_and_not_created(tmp_path):
    missing = tmp_path / "nothing-here.db"
    settings = load_settings(database_url=f"sqlite:///{missing}", base_url="http://localhost:8000")
    result = check_database(settings, database_engine(settings))
    assert result.ok is False and "digest db upgrade" in result.fix
    assert not missing.exists()
    report = run_checks(settings)
    assert not report.ok and not missing.exists()


def test_an_old_schema_is_reported_with_the_upgrade_command(tmp_path):
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    command.upgrade(alembic_config(engine), "0001_initial")
    engine.dispose()
    settings = load_settings(database_url=f"sqlite:///{path}")
    result = check_database(settings, database_engine(settings))
    assert result.ok is False and result.detail.startswith("the schema is at 0001_initial")
    assert result.fix == "run `digest db upgrade`"
