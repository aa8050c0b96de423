import subprocess
import sys

import pytest

from digest.config import load_settings, parse_smtp_url
from digest.errors import ConfigError


def test_defaults_run_a_laptop_install_without_configuration(monkeypatch):
    for name in ("DIGEST_DATABASE_URL", "DIGEST_SMTP_URL", "DIGEST_SOURCES", "PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url == "sqlite:///digest.db"
    assert settings.smtp is None  # messages go to the outbox folder
    assert [str(s) for s in settings.source_specs] == ["hf"]
    assert settings.port == 8000


def test_sources_parse_into_typed_specs():
    settings = load_settings(sources="hf, arxiv:cs.LG+cs.CL ,file:papers.jsonl")
    assert [(s.kind, s.argument) for s in settings.source_specs] == [
        ("hf", ""),
        ("arxiv", "cs.LG+cs.CL"),
        ("file", "papers.jsonl"),
    ]
    assert settings.source_specs[1].categories == ("cs.LG", "cs.CL")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DIGEST_SOURCES", "hf,rss", "DIGEST_SOURCES: unknown source 'rss'"),
        ("DIGEST_SOURCES", "arxiv:", "DIGEST_SOURCES: 'arxiv' needs categories"),
        ("DIGEST_SOURCES", "arxiv:cs LG", "DIGEST_SOURCES: not an arXiv category"),
        ("DIGEST_DATABASE_URL", "mysql://x/y", "DIGEST_DATABASE_URL: must be sqlite"),
        ("DIGEST_SMTP_URL", "http://mail.example.org", "DIGEST_SMTP_URL: must start with smtp://"),
        ("DIGEST_SMTP_URL", "smtp://mail.example.org:99999", "DIGEST_SMTP_URL: bad port"),
        ("DIGEST_BASE_URL", "localhost:8000", "DIGEST_BASE_URL: must be a http:// or https:// URL"),
        ("DIGEST_FROM", "digest\r\nBcc: victim@example.org", "DIGEST_FROM: must be one line"),
        ("PORT", "eighty", "PORT:"),
        ("DIGEST_SMTP_RATE", "0", "DIGEST_SMTP_RATE:"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(expected)
    assert "\n" not in str(error.value)


def test_the_command_line_stops_with_one_line_not_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DIGEST_SOURCES": "hf,gopher", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "digest.cli", "fetch"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: DIGEST_SOURCES: unknown source 'gopher' (known: hf, arxiv:CATS, file:PATH)"
    ]
    assert not (tmp_path / "digest.db").exists()  # nothing was touched


def test_smtp_url_carries_tls_mode_and_credentials():
    smtp = parse_smtp_url("smtp://user%40example.org:p%2Fss@mail.example.org:2525?starttls=require")
    assert (smtp.host, smtp.port, smtp.ssl, smtp.starttls) == ("mail.example.org", 2525, False, "require")
    assert (smtp.username, smtp.password) == ("user@example.org", "p/ss")
    assert "p/ss" not in repr(smtp)
    implicit = parse_smtp_url("smtps://mail.example.org")
    assert (implicit.port, implicit.ssl) == (465, True)
