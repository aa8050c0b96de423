"""The fetch as an operator runs it: `digest fetch` against a local stand-in of the Hugging Face API."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from digest.cli import main
from digest.models import Paper
from tests.factories import hf_item, sample_records
from tests.stand_ins import ArxivStandIn, HFStandIn, TrickleServer


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


# Issue 13, "Sources": every field of every item is untrusted; a source never hangs the fetch.

ARXIV_RECORDS = sample_records()[60:65]


def use(monkeypatch, **values: str) -> None:
    """Set DIGEST_* variables for the next command, as an operator's environment would."""
    from digest.config import get_settings

    for name, value in values.items():
        monkeypatch.setenv(f"DIGEST_{name}", value)
    get_settings.cache_clear()


def fetch(*args: str):
    return CliRunner().invoke(main, ["fetch", *args])


def test_a_wrong_type_in_one_item_costs_that_item_only_and_the_other_sources_are_stored(monkeypatch, cli_env, committed_db):
    with HFStandIn(sample_records()[:41]) as hf, ArxivStandIn(ARXIV_RECORDS) as arxiv:
        hf.items[7]["paper"]["authors"] = 7
        use(monkeypatch, SOURCES="hf,arxiv:cs.LG", HF_API_URL=hf.url, ARXIV_API_URL=arxiv.url)
        result = fetch()
    assert result.exit_code == 0, result.output
    assert "hf: 40 new, 0 updated, 1 skipped" in result.output
    assert "arxiv:cs.LG: 5 new, 0 updated, 0 skipped" in result.output
    assert "fetched: 45 new, 0 updated, 0 unchanged, 1 skipped" in result.output
    assert count_papers(committed_db) == 45


def test_a_field_of_the_wrong_type_that_a_paper_can_do_without_is_ignored_and_counted(monkeypatch, cli_env, committed_db):
    with HFStandIn(sample_records()[:3]) as hf:
        hf.items[0]["paper"]["upvotes"] = "7"
        hf.items[1]["paper"]["githubRepo"] = {"url": "https://github.com/x/y"}
        use(monkeypatch, SOURCES="hf", HF_API_URL=hf.url)
        result = fetch()
    assert result.exit_code == 0, result.output
    assert "fetched: 3 new, 0 updated, 0 unchanged, 0 skipped" in result.output
    assert "note: hf: 2 field(s) of the wrong type ignored (first: hf item 0: upvotes: " in result.output
    assert count_papers(committed_db) == 3


def test_an_unexpected_error_in_one_source_is_reported_and_the_others_are_stored(monkeypatch, cli_env, committed_db):
    from digest.sources.hf import HuggingFaceSource

    monkeypatch.setattr(HuggingFaceSource, "fetch", lambda self, day: {}["a bug"])
    use(monkeypatch, SOURCES=f"hf,file:{sample_path()}")
    result = fetch()
    assert result.exit_code == 1
    assert "error: hf: unexpected KeyError: 'a bug' (a bug: the traceback is in the log)" in result.output
    assert count_papers(committed_db) == 98


def test_control_characters_are_cleaned_so_every_database_stores_the_same_title(monkeypatch, cli_env, committed_db):
    records = sample_records()[:10]
    records[4] = records[4] | {"title": "Pre\x00Training at \x07Scale\x85", "authors": ["Ana\x00 Ruiz"]}
    with HFStandIn(records) as hf:
        use(monkeypatch, SOURCES="hf", HF_API_URL=hf.url)
        result = fetch()
    assert result.exit_code == 0, result.output
    assert "fetched: 10 new" in result.output
    with committed_db.connect() as connection:
        paper = connection.execute(select(Paper.title, Paper.authors).where(Paper.id == records[4]["id"])).one()
    assert paper.title == "PreTraining at Scale" and paper.authors == ["Ana Ruiz"]


@pytest.mark.timeout(60)  # before the deadlines existed, this fetch never ended
@pytest.mark.parametrize(
    "trickle_headers, limits, message",
    [
        (False, {"HTTP_DEADLINE": "2"}, "did not finish answering within 2 s (DIGEST_HTTP_DEADLINE)"),
        (True, {"HTTP_DEADLINE": "2"}, "did not finish answering within 2 s (DIGEST_HTTP_DEADLINE)"),
        (False, {"FETCH_DEADLINE": "2"}, "did not finish answering before the fetch's deadline of 2 s (DIGEST_FETCH_DEADLINE)"),
    ],
    ids=["body-request-deadline", "headers-request-deadline", "body-fetch-deadline"],
)
def test_a_trickling_source_is_stopped_at_its_deadline_and_the_others_are_stored(
    monkeypatch, cli_env, committed_db, trickle_headers, limits, message
):
    body = json.dumps([hf_item(r) for r in sample_records()[:20]]).encode()
    with TrickleServer(body, trickle_headers=trickle_headers) as slow, ArxivStandIn(ARXIV_RECORDS) as arxiv:
        use(monkeypatch, SOURCES="hf,arxiv:cs.LG", HF_API_URL=slow.url, ARXIV_API_URL=arxiv.url, **limits)
        result = fetch()
    assert result.exit_code == 1
    assert f"error: hf: {slow.url}/api/daily_papers {message}" in result.output
    assert len(slow.requests) == 1  # a request that used its whole deadline is not tried again
    assert "arxiv:cs.LG: 5 new" in result.output
    assert count_papers(committed_db) == 5


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "until-close"])
def test_an_answer_larger_than_the_cap_is_refused(stand_in, committed_db, send_length):
    stand_in.body = b"[" + b" " * 50_000_000 + b"]"  # 50 MB of valid JSON
    stand_in.send_length = send_length
    result = fetch()
    assert result.exit_code == 1
    assert "answered more than 10,000,000 bytes (DIGEST_HTTP_MAX_BYTES)" in result.output
    assert count_papers(committed_db) == 0


@pytest.mark.timeout(60)  # before, it waited 3 x 30 s
def test_a_source_asking_to_wait_past_the_fetch_deadline_fails_at_once(stand_in, monkeypatch, committed_db):
    stand_in.status, stand_in.retry_after = 429, "30"
    use(monkeypatch, FETCH_DEADLINE="5")
    result = fetch()
    assert result.exit_code == 1
    assert "answered 429 Too Many Requests; waiting 30 s would pass DIGEST_FETCH_DEADLINE (5 s)" in result.output
    assert len(stand_in.requests) == 1


@pytest.mark.timeout(60)  # before, it went on for 60 requests and more
def test_an_arxiv_server_claiming_absurd_totals_is_refused_after_one_request(monkeypatch, cli_env, committed_db):
    with ArxivStandIn(sample_records(), total=30_000, ignore_start=True) as arxiv:
        use(monkeypatch, SOURCES="arxiv:cs.LG", ARXIV_API_URL=arxiv.url)
        result = fetch()
    assert result.exit_code == 1
    assert "error: arxiv: the API reports 30,000 results for 2 days of cs.LG" in result.output
    assert len(arxiv.requests) == 1
    assert count_papers(committed_db) == 0


def test_an_arxiv_server_ignoring_start_is_stopped_at_the_first_repeated_page(monkeypatch, cli_env, committed_db):
    records = [r | {"id": f"2611.{n:05d}"} for n, r in enumerate(sample_records() * 3)][:250]
    with ArxivStandIn(records, ignore_start=True) as arxiv:
        use(monkeypatch, SOURCES="arxiv:cs.LG", ARXIV_API_URL=arxiv.url)
        result = fetch()
    assert result.exit_code == 0, result.output
    assert "note: arxiv:cs.LG: the page at start=200 repeated papers already read" in result.output
    assert "fetched: 200 new" in result.output
    assert len(arxiv.requests) == 2


@pytest.mark.parametrize("name", ["HTTP_DEADLINE", "FETCH_DEADLINE", "HTTP_MAX_BYTES"])
def test_a_bad_limit_stops_the_fetch_with_one_line(monkeypatch, cli_env, name):
    use(monkeypatch, **{name: "0"})
    result = fetch()
    assert result.exit_code == 2
    assert result.output.startswith(f"error: DIGEST_{name}: Input should be greater than")
    assert len(result.output.strip().splitlines()) == 1


def test_a_source_the_database_refuses_is_reported_and_the_others_are_stored(monkeypatch, cli_env, committed_db):
    from sqlalchemy.exc import DataError

    import digest.fetch

    store = digest.fetch.store_fetch

    def refuse_hf(session, result, now=None):
        if result.source == "hf":
            raise DataError("INSERT INTO papers ...", {}, ValueError("invalid byte sequence for encoding UTF8: 0x00"))
        return store(session, result, now)

    monkeypatch.setattr(digest.fetch, "store_fetch", refuse_hf)
    with HFStandIn(sample_records()[:5]) as hf:
        use(monkeypatch, SOURCES=f"hf,file:{sample_path()}", HF_API_URL=hf.url)
        result = fetch()
    assert result.exit_code == 1
    assert "error: hf: not stored, the database refused it (ValueError: invalid byte sequence" in result.output
    assert count_papers(committed_db) == 98
