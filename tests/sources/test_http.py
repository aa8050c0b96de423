"""The limits every source request lives within: a total deadline per request and per fetch, and a
body size cap. A fake clock stands in for time, so nothing here waits."""

from itertools import count

import httpx
import pytest

from digest.errors import SourceError
from digest.sources.http import Fetcher, Limits

URL = "http://source.test/api"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fetcher(handler, clock: Clock, **limits) -> Fetcher:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Fetcher(client, "src", backoff=2.0, sleep=clock.sleep, clock=clock, limits=Limits(**limits))


def test_a_whole_answer_within_the_limits_is_returned():
    body = fetcher(lambda r: httpx.Response(200, content=b"[1, 2]"), Clock()).get(URL)
    assert body == b"[1, 2]"


def test_a_declared_length_over_the_cap_is_refused_before_reading():
    with pytest.raises(SourceError) as error:
        fetcher(lambda r: httpx.Response(200, content=b"x" * 2000), Clock(), max_bytes=1000).get(URL)
    assert str(error.value) == f"src: {URL} answered more than 1,000 bytes (DIGEST_HTTP_MAX_BYTES)"


def test_an_endless_body_without_a_length_stops_at_the_cap():
    sent = count()
    endless = (b"x" * 100 for _ in iter(lambda: next(sent), None))  # never ends on its own
    with pytest.raises(SourceError, match="more than 1,000 bytes"):
        fetcher(lambda r: httpx.Response(200, content=endless), Clock(), max_bytes=1000).get(URL)
    assert next(sent) <= 12


def test_a_body_trickling_past_the_request_deadline_stops_there_and_is_not_retried():
    clock, calls = Clock(), []

    def trickle():
        while True:
            clock.now += 1.0  # one byte a second: each read well within any read timeout
            yield b"x"

    def handler(request):
        calls.append(request)
        return httpx.Response(200, content=trickle())

    with pytest.raises(SourceError) as error:
        fetcher(handler, clock, request_deadline=30).get(URL)
    assert str(error.value) == f"src: {URL} did not finish answering within 30 s (DIGEST_HTTP_DEADLINE)"
    assert len(calls) == 1 and 30 <= clock.now <= 31


def test_the_fetch_deadline_bounds_every_request_of_a_fetch():
    clock = Clock()

    def slow_page(request):
        clock.now += 4.0  # each page well within its own deadline
        return httpx.Response(200, content=b"[]")

    source = fetcher(slow_page, clock, request_deadline=30, fetch_deadline=10)
    source.get(URL)
    source.get(URL)
    with pytest.raises(SourceError) as error:
        source.get(URL)
        source.get(URL)
    assert str(error.value).endswith("before the fetch's deadline of 10 s (DIGEST_FETCH_DEADLINE)")


def test_back_off_that_would_pass_the_fetch_deadline_fails_at_once():
    clock, calls = Clock(), []

    def handler(request):
        calls.append(request)
        return httpx.Response(503)

    with pytest.raises(SourceError) as error:
        fetcher(handler, clock, fetch_deadline=5).get(URL)
    assert str(error.value) == (
        f"src: {URL} answered 503 Service Unavailable; waiting 4 s would pass DIGEST_FETCH_DEADLINE (5 s)"
    )
    assert clock.sleeps == [2.0] and len(calls) == 2
