"""digest run and digest send, as an operator types them."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from digest.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_quick_start_ends_with_a_digest_to_open(cli_env, committed_db, monkeypatch, tmp_path):
    monkeypatch.setenv("DIGEST_HTTP_BACKOFF", "0")  # the live source is unreachable here: fall back fast
    result = run("run")
    assert result.exit_code == 0, result.output
    assert "demo digest to demo@example.org" in result.output
    assert "digest subscribe you@example.org" in result.output  # how to add real ones
    assert "messages were written to" in result.output  # no SMTP: says where they went
    assert re.search(r"sent: 1, skipped \(nothing matched\): 0, failed: 0, suppressed: 0", result.output)
    eml = Path(re.search(r"digest written to: (\S+\.eml)", result.output).group(1))
    html = Path(re.search(r"open it in a browser: file://(\S+\.html)", result.output).group(1))
    assert eml.exists() and eml.parent == (tmp_path / "outbox").resolve()
    page = html.read_text(encoding="utf-8")
    assert "<html" in page.lower() and "pre-training" in page.lower()

    # The demo subscriber already had the newest edition; nothing is due before their hour.
    again = run("send")
    assert again.exit_code == 0 and "sent: 0" in again.output
    once_more = run("send", "--to", "demo@example.org")
    assert "sent: 0" in once_more.output and "already had" in once_more.output
    # A second run with real subscribers present creates no demo subscriber again.
    assert "demo digest" not in run("run").output


def test_send_to_an_unknown_address_says_so(cli_env, committed_db):
    result = CliRunner().invoke(main, ["send", "--to", "nobody@example.org"])
    assert result.exit_code == 1 and result.output.strip() == "error: no subscriber nobody@example.org"
