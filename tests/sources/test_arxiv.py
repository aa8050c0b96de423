from datetime import date, datetime, timezone
from pathlib import Path

import httpx
import pytest

from digest.errors import SourceError
from digest.sources.arxiv import ArxivSource, search_query
from tests.factories import arxiv_feed

FEED = (Path(__file__).parents[1] / "fixtures" / "arxiv_feed.xml").read_bytes()
DAY = date(2026, 11, 26)


def arxiv(handler, sleeps=None) -> ArxivSource:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    sleeps = sleeps if sleeps is not None else []
    return ArxivSource(client, "http://arxiv.test", ("cs.LG", "cs.CL"), sleep=sleeps.append)


def test_entries_become_papers_with_clean_text_and_no_version():
    requests = []
    result = arxiv(lambda r: (requests.append(r), httpx.Response(200, content=FEED))[1]).fetch(DAY)
    assert [p.id for p in result.papers] == ["2611.01234", "2611.05678"]
    first = result.papers[0]
    assert first.title == "Scaling Laws for Multi-Modal Pre-Training: A Study"
    assert first.abstract == "We study how multi-modal pre-training scales. We find that data matters more than size."
    assert first.authors == ["Ana Ruiz", "Zoë Müller"]
    assert first.categories == ["cs.CL", "cs.LG"]
    assert first.published_at == datetime(2026, 11, 24, 17, 59, 44, tzinfo=timezone.utc)
    # Markup in a title is kept as text, to be escaped where it is shown.
    assert result.papers[1].title == "<script>alert(1)</script> Robust Training"
    assert len(result.skipped) == 1 and "not-an-id" in result.skipped[0]
    params = requests[0].url.params
    assert params["search_query"] == search_query(("cs.LG", "cs.CL"), DAY)
    assert "(cat:cs.LG OR cat:cs.CL) AND submittedDate:[202611250000 TO 202611262359]" == params["search_query"]


def test_pages_are_requested_at_most_one_every_three_seconds():
    entry = FEED.split(b"<entry>")[1].split(b"</entry>")[0]
    pages = {
        "0": FEED.split(b"<entry>")[0].replace(b">3<", b">2<") + b"<entry>" + entry + b"</entry></feed>",
        "1": FEED.split(b"<entry>")[0].replace(b">3<", b">2<")
        + b"<entry>"
        + entry.replace(b"2611.01234", b"2611.09999")
        + b"</entry></feed>",
    }
    sleeps: list[float] = []
    result = arxiv(lambda r: httpx.Response(200, content=pages[r.url.params["start"]]), sleeps).fetch(DAY)
    assert [p.id for p in result.papers] == ["2611.01234", "2611.09999"]
    assert len(sleeps) == 1 and 2.9 < sleeps[0] <= 3.0


def test_an_error_feed_is_an_error():
    error_feed = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>
<title>Error</title><summary>incorrect id format for 1234</summary></entry></feed>"""
    with pytest.raises(SourceError, match="refused the query: incorrect id format"):
        arxiv(lambda r: httpx.Response(200, content=error_feed)).fetch(DAY)


@pytest.mark.parametrize("body", [FEED[: len(FEED) // 2], b"<html><body>Rate exceeded</body></html>", b""])
def test_truncated_or_foreign_answers_are_errors(body):
    with pytest.raises(SourceError, match="arxiv"):
        arxiv(lambda r: httpx.Response(200, content=body)).fetch(DAY)


def test_rate_exceeded_is_retried():
    answers = [httpx.Response(503, text="Rate exceeded."), httpx.Response(200, content=FEED)]
    sleeps: list[float] = []
    result = arxiv(lambda r: answers.pop(0), sleeps).fetch(DAY)
    assert len(result.papers) == 2
    assert sleeps and sleeps[0] >= 3.0


def records(count: int, first: int = 0) -> list[dict]:
    return [{"id": f"2611.{n:05d}", "title": f"Paper {n}"} for n in range(first, first + count)]


def test_an_absurd_total_is_refused_after_the_first_page():
    requests = []
    handler = lambda r: (requests.append(r), httpx.Response(200, content=arxiv_feed(records(200), total=30_000)))[1]
    with pytest.raises(SourceError) as error:
        arxiv(handler).fetch(DAY)
    assert str(error.value).startswith("arxiv: the API reports 30,000 results for 2 days of cs.LG+cs.CL")
    assert len(requests) == 1


def test_a_server_ignoring_start_is_stopped_at_the_first_repeated_page_and_what_was_read_is_kept():
    requests = []
    handler = lambda r: (requests.append(r), httpx.Response(200, content=arxiv_feed(records(200), total=600)))[1]
    result = arxiv(handler).fetch(DAY)
    assert len(result.papers) == 200
    assert [r.url.params["start"] for r in requests] == ["0", "200"]
    assert result.notes == ["the page at start=200 repeated papers already read (the server ignores `start`?): "
                            "kept the 200 read of the 600 it reports"]


def test_pages_go_on_until_the_reported_total():
    pages = {str(s): arxiv_feed(records(200, s), total=450, start=s) for s in (0, 200)} | {"400": arxiv_feed(records(50, 400), total=450)}
    result = arxiv(lambda r: httpx.Response(200, content=pages[r.url.params["start"]])).fetch(DAY)
    assert len(result.papers) == 450 and result.notes == []


def test_text_and_terms_of_an_entry_are_cleaned():
    feed = arxiv_feed([{"id": "2611.00001", "title": "A\x85 title\x9f", "categories": ["cs.LG\x80"], "authors": ["Bo\x9f Li"]}])
    [paper] = arxiv(lambda r: httpx.Response(200, content=feed)).fetch(DAY).papers
    assert (paper.title, paper.categories, paper.authors) == ("A title", ["cs.LG"], ["Bo Li"])


# ---------------------------------------------------------------- lookups by id


def lookup(handler, sleeps=None) -> ArxivSource:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    sleeps = sleeps if sleeps is not None else []
    return ArxivSource(client, "http://arxiv.test", (), sleep=sleeps.append)


def test_ids_are_looked_up_in_one_request_with_id_list():
    requests = []
    result = lookup(lambda r: (requests.append(r), httpx.Response(200, content=FEED))[1]).fetch_ids(
        ["2611.01234", "2611.05678", "2611.01234"])
    assert [p.id for p in result.papers] == ["2611.01234", "2611.05678"]
    assert result.papers[0].title == "Scaling Laws for Multi-Modal Pre-Training: A Study"
    [request] = requests
    assert request.url.path == "/api/query"
    assert dict(request.url.params) == {"id_list": "2611.01234,2611.05678", "start": "0", "max_results": "2"}


def test_papers_nobody_asked_for_are_not_kept():
    result = lookup(lambda r: httpx.Response(200, content=FEED)).fetch_ids(["2611.05678"])
    assert [p.id for p in result.papers] == ["2611.05678"]


def test_many_ids_go_in_batches_three_seconds_apart():
    from digest.sources.arxiv import ID_BATCH

    asked, sleeps = [], []
    ids = [f"2611.{n:05d}" for n in range(ID_BATCH + 3)]
    records = [{"id": i, "title": f"Paper {i}"} for i in ids]

    def answer(request):
        wanted = request.url.params["id_list"].split(",")
        asked.append(wanted)
        return httpx.Response(200, content=arxiv_feed([r for r in records if r["id"] in wanted]))

    result = lookup(answer, sleeps).fetch_ids(ids)
    assert [len(batch) for batch in asked] == [ID_BATCH, 3]
    assert [p.id for p in result.papers] == ids
    assert len(sleeps) == 1 and 2.9 < sleeps[0] <= 3.0


def test_a_lookup_uses_the_fetchs_retries_and_limits():
    from digest.config import load_settings
    from digest.sources.arxiv import lookup_source

    settings = load_settings(arxiv_api_url="http://arxiv.test", http_attempts=2, http_backoff=1.0,
                             http_max_bytes=1000, secret_key="x" * 40)
    source = lookup_source(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=FEED))),
                           settings)
    assert (source.fetcher.attempts, source.fetcher.backoff, source.fetcher.min_interval) == (2, 3.0, 3.0)
    with pytest.raises(SourceError, match="DIGEST_HTTP_MAX_BYTES"):
        source.fetch_ids(["2611.01234"])


def test_an_error_feed_for_a_lookup_is_an_error():
    error_feed = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_1234</id>
<title>Error</title><summary>incorrect id format for 1234</summary></entry></feed>"""
    with pytest.raises(SourceError, match="refused the query"):
        lookup(lambda r: httpx.Response(200, content=error_feed)).fetch_ids(["1234"])
