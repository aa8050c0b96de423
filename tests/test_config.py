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


PUBLIC = "https://papers.example.org"
GOOD_KEY = "0123456789abcdef0123456789abcdef"  # 32 bytes


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"DIGEST_BASE_URL": PUBLIC}, "DIGEST_SECRET_KEY: is the public development key"),
        ({"DIGEST_BASE_URL": PUBLIC, "DIGEST_SECRET_KEY": ""}, "DIGEST_SECRET_KEY: is empty"),
        ({"DIGEST_SECRET_KEY": ""}, "DIGEST_SECRET_KEY: is empty"),  # on localhost too
        ({"DIGEST_BASE_URL": PUBLIC, "DIGEST_SECRET_KEY": "x" * 31}, "DIGEST_SECRET_KEY: is 31 bytes long"),
        ({"DIGEST_SECRET_KEY": "test-secret-key"}, "DIGEST_SECRET_KEY: is 15 bytes long"),
        ({"DIGEST_BASE_URL": PUBLIC, "DIGEST_SECRET_KEY": GOOD_KEY, "DIGEST_SECRET_KEY_FALLBACKS": "old"},
         "DIGEST_SECRET_KEY_FALLBACKS: an old key is 3 bytes long"),
    ],
)
def test_a_secret_key_anyone_could_know_or_guess_stops_the_start(monkeypatch, environment, expected):
    monkeypatch.delenv("DIGEST_SECRET_KEY", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(expected) and "openssl rand -hex 32" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("base_url", ["http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"])
def test_the_quick_start_keeps_the_development_key_on_this_machine(monkeypatch, base_url):
    monkeypatch.delenv("DIGEST_SECRET_KEY", raising=False)
    monkeypatch.setenv("DIGEST_BASE_URL", base_url)
    assert load_settings().secret_keys == ("insecure-development-key-set-DIGEST_SECRET_KEY",)


def test_old_keys_verify_and_the_current_one_signs(monkeypatch):
    settings = load_settings(base_url=PUBLIC, secret_key="n" * 32, secret_key_fallbacks=f"{'b' * 40}, {'a' * 40}")
    assert settings.secret_keys == ("a" * 40, "b" * 40, "n" * 32)  # oldest first, as itsdangerous wants them


def test_the_public_key_with_a_public_base_url_stops_a_command_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_BASE_URL": PUBLIC}
    result = subprocess.run([sys.executable, "-m", "digest.cli", "stats"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: DIGEST_SECRET_KEY: is the public development key")
    assert not (tmp_path / "digest.db").exists()
