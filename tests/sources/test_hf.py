import json
from datetime import date

import httpx
import pytest

from digest.errors import SourceError
from digest.sources.hf import HuggingFaceSource
from tests.factories import hf_item, sample_records

DAY = date(2026, 11, 26)


def paged_api(items: list[dict], requests: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        page, limit = int(request.url.params.get("p", 0)), int(request.url.params.get("limit", 50))
        return httpx.Response(200, json=items[page * limit : (page + 1) * limit])

    return handler


def source(handler, sleeps: list[float] | None = None) -> HuggingFaceSource:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    sleeps = sleeps if sleeps is not None else []
    return HuggingFaceSource(client, "http://hf.test", sleep=sleeps.append)


def test_all_sample_papers_arrive_across_pages_until_an_empty_page():
    records = sample_records()
    requests: list[httpx.Request] = []
    result = source(paged_api([hf_item(r) for r in records], requests)).fetch(DAY)
    assert [p.id for p in result.papers] == [r["id"] for r in records]
    assert result.skipped == []
    assert {r.url.params["date"] for r in requests} == {"2026-11-26"}
    assert [r.url.params["p"] for r in requests] == ["0", "1"]  # 98 papers, 100 a page, then empty
    first = result.papers[0]
    assert first.title == records[0]["title"]
    assert first.authors == records[0]["authors"]
    assert first.source == "hf"


def test_fields_of_an_item_are_kept():
    item = hf_item(
        {
            "id": "2611.01234",
            "title": "  A   Title\n with breaks ",
            "abstract": "Abstract",
            "authors": ["Ana Ruiz"],
            "upvotes": 42,
            "github_repo": "https://github.com/example/repo",
            "project_page": "javascript:alert(1)",
            "keywords": ["pretraining"],
        }
    )
    paper = source(lambda r: httpx.Response(200, json=[item] if r.url.params["p"] == "0" else [])).fetch(DAY).papers[0]
    assert paper.title == "A Title with breaks"
    assert paper.upvotes == 42
    assert paper.github_repo == "https://github.com/example/repo"
    assert paper.project_page is None  # only http(s) links are kept
    assert paper.keywords == ["pretraining"]


def test_bad_items_are_skipped_and_counted_and_the_rest_is_kept():
    good = hf_item({"id": "2611.00001", "title": "Good"})
    no_title = hf_item({"id": "2611.00002", "title": ""})
    bad_id = hf_item({"id": "not-arxiv", "title": "Bad id"})
    no_paper = {"title": "loose"}
    body = [good, no_title, bad_id, no_paper, "string"]
    result = source(lambda r: httpx.Response(200, json=body if r.url.params["p"] == "0" else [])).fetch(DAY)
    assert [p.id for p in result.papers] == ["2611.00001"]
    assert len(result.skipped) == 4
    assert "no title" in result.skipped[0]


@pytest.mark.parametrize(
    "body",
    [b"<!DOCTYPE html><html><body>Service unavailable</body></html>", b'[{"paper": {"id": "2611.0', b'{"error": "x"}'],
)
def test_an_unreadable_answer_is_an_error_not_an_empty_success(body):
    with pytest.raises(SourceError) as error:
        source(lambda r: httpx.Response(200, content=body)).fetch(DAY)
    assert str(error.value).startswith("hf: http://hf.test/api/daily_papers")


def test_server_errors_are_retried_with_back_off_then_reported():
    calls, sleeps = [], []

    def handler(request):
        calls.append(request)
        return httpx.Response(503)

    with pytest.raises(SourceError) as error:
        source(handler, sleeps).fetch(DAY)
    assert len(calls) == 4
    assert sleeps == [2.0, 4.0, 8.0]
    assert "503" in str(error.value) and "after 4 tries" in str(error.value)


def test_429_waits_as_long_as_retry_after_says_then_succeeds():
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json=[])]
    sleeps: list[float] = []
    result = source(lambda r: answers.pop(0) if answers else httpx.Response(200, json=[]), sleeps).fetch(DAY)
    assert sleeps == [7.0]
    assert result.papers == []


def test_a_client_error_is_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(400, json={"error": "Invalid date"})

    with pytest.raises(SourceError, match="400"):
        source(handler).fetch(DAY)
    assert len(calls) == 1


def test_timeouts_are_retried_and_bounded():
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(SourceError, match="timed out after 4 tries"):
        source(handler).fetch(DAY)
    assert len(calls) == 4


def test_a_server_ignoring_the_page_parameter_does_not_loop_forever():
    items = [hf_item({"id": "2611.00001", "title": "Same"})]
    requests: list[httpx.Request] = []
    result = source(lambda r: (requests.append(r), httpx.Response(200, content=json.dumps(items)))[1]).fetch(DAY)
    assert len(result.papers) == 1
    assert len(requests) == 2


def one_page(items: list) -> HuggingFaceSource:
    return source(lambda r: httpx.Response(200, json=items if r.url.params["p"] == "0" else []))


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("authors", 7, "paper.authors: Input should be a valid list, got int"),
        ("authors", "Ana Ruiz, Bo Li", "paper.authors: Input should be a valid list, got str"),
        ("title", 7, "paper.title: Input should be a valid string, got int"),
        ("title", ["A title"], "paper.title: Input should be a valid string, got list"),
        ("summary", {"text": "x"}, "paper.summary: Input should be a valid string, got dict"),
        ("id", 2611.00002, "paper.id: Input should be a valid string, got float"),
        ("id", None, "paper.id: Input should be a valid string, got NoneType"),
    ],
)
def test_an_item_whose_paper_fields_have_the_wrong_type_is_skipped_with_its_reason(field, value, reason):
    good = hf_item({"id": "2611.00001", "title": "Good"})
    bad = hf_item({"id": "2611.00002", "title": "Bad"})
    bad["paper"][field] = value
    result = one_page([good, bad, hf_item({"id": "2611.00003", "title": "Also good"})]).fetch(DAY)
    assert [p.id for p in result.papers] == ["2611.00001", "2611.00003"]
    assert result.skipped == [f"hf item 1: {reason}"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("upvotes", "7"),
        ("upvotes", True),
        ("upvotes", 10**20),  # past PostgreSQL's integer: a DataError for the whole source before
        ("upvotes", -3),
        ("githubRepo", 5),
        ("projectPage", ["https://example.org"]),
        ("ai_keywords", "pretraining"),
        ("publishedAt", 1764000000),
        ("publishedAt", "yesterday"),
        ("publishedAt", "0001-01-01T00:00:00+05:00"),  # before year 1 in UTC
    ],
)
def test_a_field_the_paper_can_do_without_is_ignored_when_its_type_is_wrong_and_counted(field, value):
    item = hf_item({"id": "2611.00001", "title": "Good", "upvotes": 4})
    item["paper"][field] = value
    result = one_page([item]).fetch(DAY)
    [paper] = result.papers
    assert result.skipped == []
    assert len(result.ignored) == 1 and result.ignored[0].startswith(f"hf item 0: {field}: ")
    assert paper.title == "Good"


def test_a_wrong_entry_in_a_list_is_dropped_and_counted():
    item = hf_item({"id": "2611.00001", "title": "Good", "authors": ["Ana Ruiz", "Bo Li"], "keywords": ["a"]})
    item["paper"]["authors"].insert(1, "Zoë Müller")  # a name where an author object belongs
    item["paper"]["authors"].append({"_id": "x", "name": 12})
    result = one_page([item]).fetch(DAY)
    assert result.papers[0].authors == ["Ana Ruiz", "Bo Li"]
    assert len(result.ignored) == 2


def test_null_optional_fields_are_simply_absent():
    item = hf_item({"id": "2611.00001", "title": "Good"})
    item["paper"].update(upvotes=None, githubRepo=None, projectPage=None, ai_keywords=None, summary=None, authors=None)
    result = one_page([item]).fetch(DAY)
    assert result.ignored == [] and result.skipped == []
    assert result.papers[0].upvotes is None and result.papers[0].authors == []


def test_control_characters_in_any_text_are_cleaned():
    item = hf_item({"id": "2611.00001", "title": "Pre\x00Train\x1bing", "abstract": "a\x00b\x9fc",
                    "authors": ["Ana\u0000Ruiz"], "keywords": ["k\x00w"], "github_repo": "https://github.com/x/\x00y"})
    paper = one_page([item]).fetch(DAY).papers[0]
    assert (paper.title, paper.abstract, paper.authors, paper.keywords) == ("PreTraining", "abc", ["AnaRuiz"], ["kw"])
    assert paper.github_repo is None  # a link with a control character is not a link
