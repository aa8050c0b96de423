"""digest subscribe, digest import, digest stats: what an operator types and reads."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from digest.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_subscribe_sends_a_confirmation_to_the_outbox(cli_env, committed_db, tmp_path):
    result = run("subscribe", "Ana@Example.org", "--topics", "pretraining; diffusion -video")
    assert result.exit_code == 0, result.output
    assert "ana@example.org: pending, 2 topic(s); confirmation sent" in result.output
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["ana@example.org.eml"]


def test_subscribe_confirmed_is_active_at_once(cli_env, committed_db):
    result = run("subscribe", "bo@example.org", "--topics", "agents", "--confirmed", "--timezone", "Europe/Paris", "--hour", "6")
    assert result.exit_code == 0 and "bo@example.org: active, 1 topic(s)" in result.output
    stats = json.loads(run("stats", "--json").output)
    assert stats["subscribers"]["active"] == 1


@pytest.mark.parametrize("topics", [["--topics", ""], ["--topics", " ; "], []])
def test_subscribe_without_topics_makes_a_reader_of_the_trending_papers(cli_env, committed_db, tmp_path, topics):
    result = run("subscribe", "ana@example.org", *topics)
    assert result.exit_code == 0, result.output
    assert "ana@example.org: pending, no topics: the day's trending papers; confirmation sent" in result.output
    sent = (tmp_path / "outbox" / "ana@example.org.eml").read_bytes().decode()
    assert "trending papers" in sent
    stats = json.loads(run("stats", "--json").output)
    assert stats["subscribers"]["pending"] == 1 and stats["topics"] == 0


def test_import_with_an_empty_topics_cell(cli_env, committed_db, tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("email,topics\nana@example.org,\nbo@example.org,agents\n")
    result = run("import", str(source), "--confirmed")
    assert result.exit_code == 0, result.output
    assert "imported: 2 new, 0 already known, 0 bad row(s)" in result.output
    assert json.loads(run("stats", "--json").output)["topics"] == 1


def test_subscribe_with_a_bad_topic_or_address_says_why_in_one_line(cli_env, committed_db):
    result = CliRunner().invoke(main, ["subscribe", "ana@example.org", "--topics", "(broken"])
    assert result.exit_code == 1 and result.output.startswith("error: topic '(broken'")
    result = CliRunner().invoke(main, ["subscribe", "nobody", "--topics", "agents"])
    assert result.exit_code == 1 and "error: email:" in result.output
    assert json.loads(run("stats", "--json").output)["subscribers"]["pending"] == 0


def test_import_reports_bad_rows_by_line_and_keeps_the_good_ones(cli_env, committed_db, tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("email,topics\nana@example.org,pretraining;agents\nbroken,agents\nbo@example.org,robot*,UTC,9\n")
    result = CliRunner().invoke(main, ["import", str(source), "--confirmed"])
    assert result.exit_code == 1
    assert "line 3: email:" in result.stderr
    assert "imported: 2 new, 0 already known, 1 bad row(s)" in result.output
    assert "2 active" in run("stats").output


@pytest.mark.integration
def test_digest_web_serves_the_pages_on_port(cli_env, committed_db):
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **cli_env, "PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "digest.cli", "web", "--host", "127.0.0.1"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail("digest web did not answer:\n" + process.communicate()[0])
                time.sleep(0.2)
        assert answer.status_code == 200 and "Subscribe" in answer.text
    finally:
        process.terminate()
        process.wait(10)


def test_subscribe_with_topics_past_the_limits_says_which_limit_in_one_line(cli_env, committed_db):
    result = CliRunner().invoke(main, ["subscribe", "ana@example.org", "--topics", "ab* cd* ef* gh* ij*"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: topic 'ab* cd* ef* gh* ij*': "
                                     "has more than the 4 prefixes (word*) a topic may have")
    result = CliRunner().invoke(main, ["subscribe", "ana@example.org", "--topics", "a " * 13])
    assert result.exit_code == 1 and "has more than the 12 words a topic may have" in result.output
    assert json.loads(run("stats", "--json").output)["subscribers"]["pending"] == 0
