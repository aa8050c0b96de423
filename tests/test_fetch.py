"""The fetch as an operator runs it: `digest fetch` against a local stand-in of the Hugging Face API."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from digest.cli import main
from digest.models import Paper
from tests.factories import sample_records
from tests.stand_ins import HFStandIn


def count_papers(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Paper))


@pytest.fixture
def stand_in(monkeypatch, cli_env):
    with HFStandIn(sample_records()) as server:
        monkeypatch.setenv("DIGEST_HF_API_URL", server.url)
        monkeypatch.setenv("DIGEST_SOURCES", "hf")
        monkeypatch.setenv("DIGEST_HTTP_BACKOFF", "0.01")
        from digest.config import get_settings

        get_settings.cache_clear()
        yield server


def test_fetch_stores_every_sample_paper_once(stand_in, committed_db):
    runner = CliRunner()
    first = runner.invoke(main, ["fetch", "--date", "2026-11-26"])
    assert first.exit_code == 0, first.output
    assert "fetched: 98 new, 0 updated, 0 unchanged, 0 skipped" in first.output
    assert count_papers(committed_db) == 98
    assert {r["date"] for r in stand_in.requests} == {"2026-11-26"}

    second = runner.invoke(main, ["fetch", "--date", "2026-11-26"])
    assert second.exit_code == 0, second.output
    assert "fetched: 0 new, 0 updated, 98 unchanged, 0 skipped" in second.output
    assert count_papers(committed_db) == 98


def test_changed_upvotes_are_updated_on_the_next_fetch(stand_in, committed_db):
    runner = CliRunner()
    runner.invoke(main, ["fetch"])
    stand_in.items[0]["paper"]["upvotes"] += 5
    result = runner.invoke(main, ["fetch"])
    assert "fetched: 0 new, 1 updated, 97 unchanged, 0 skipped" in result.output


def test_a_failing_source_exits_non_zero_with_a_readable_message_and_an_unchanged_store(stand_in, committed_db):
    runner = CliRunner()
    runner.invoke(main, ["fetch"])
    stand_in.items.append(stand_in.items[0] | {"paper": stand_in.items[0]["paper"] | {"id": "2611.99999"}})
    stand_in.status = 500
    result = runner.invoke(main, ["fetch"])
    assert result.exit_code == 1
    assert f"error: hf: {stand_in.url}/api/daily_papers answered 500 Internal Server Error after 4 tries" in result.output
    assert len(stand_in.requests) > 4  # retried
    assert count_papers(committed_db) == 98


def test_a_truncated_answer_fails_and_stores_nothing(stand_in, committed_db):
    stand_in.body = json.dumps(stand_in.items)[:5000].encode()
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 1
    assert "did not answer JSON" in result.output
    assert count_papers(committed_db) == 0


def test_bad_items_are_skipped_and_counted(stand_in, committed_db):
    stand_in.items[3]["paper"]["id"] = "no-id"
    del stand_in.items[5]["paper"]["title"]
    del stand_in.items[5]["title"]
    result = CliRunner().invoke(main, ["fetch"])
    assert result.exit_code == 0
    assert "fetched: 96 new, 0 updated, 0 unchanged, 2 skipped" in result.output


def test_an_empty_database_is_created_by_the_first_command(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_SOURCES": "file:" + str(sample_path())}
    result = subprocess.run([sys.executable, "-m", "digest.cli", "fetch"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "98 new" in result.stdout
    assert (tmp_path / "digest.db").exists()


def test_run_offline_with_no_sources_configured_falls_back_to_the_sample_once(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_HF_API_URL": "http://127.0.0.1:9", "DIGEST_HTTP_BACKOFF": "0"}
    result = subprocess.run([sys.executable, "-m", "digest.cli", "run"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "loaded the bundled sample instead" in result.stdout
    assert "98 new" in result.stdout
    # With sources chosen by the operator there is no fallback: the error stands.
    env["DIGEST_SOURCES"] = "hf"
    env["DIGEST_DATABASE_URL"] = f"sqlite:///{tmp_path}/other.db"
    result = subprocess.run([sys.executable, "-m", "digest.cli", "run"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "sample" not in result.stdout


def sample_path():
    from digest.config import SAMPLE_PAPERS

    return SAMPLE_PAPERS
