"""The landing page and the subscribe form: double opt-in, same answer for everyone, limits."""

from __future__ import annotations

import re
import uuid

import pytest

from sqlalchemy import func, select

from digest.models import Subscriber, SubscriberStatus, Topic
from digest.web.ratelimit import RateLimiter
from tests.conftest import REDIS_URL
from tests.factories import make_paper, make_subscriber
from tests.mail.helpers import Elements
from tests.web.conftest import confirm_link, csrf_token, sent_messages


def post_subscribe(client, email="ana@example.org", topics="pretraining\ndiffusion -video", **extra):
    data = {"csrf_token": csrf_token(client), "email": email, "topics": topics, **extra}
    return client.post("/subscribe", data=data)


def count(session, model=Subscriber):
    return session.scalar(select(func.count()).select_from(model))


def test_landing_page_shows_the_form_the_query_help_and_todays_papers(client, session):
    make_paper(session, title="Scaling <b>Pre-Training</b> for Robots", upvotes=40)
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="email"' in page.text and 'name="topics"' in page.text
    assert "OR" in page.text and "author:" in page.text  # the query language, explained
    # A paper title is untrusted text: shown, escaped.
    assert "Scaling &lt;b&gt;Pre-Training&lt;/b&gt; for Robots" in page.text
    assert "<b>Pre-Training</b>" not in page.text


def test_the_landing_page_says_topics_are_optional_and_what_empty_topics_give(client):
    page = client.get("/").text
    textarea = re.search(r"<textarea[^>]*>", page).group(0)
    assert 'name="topics"' in textarea and "required" not in textarea
    assert "Leave topics empty to get the day's trending papers" in page


@pytest.mark.parametrize("topics", ["", " \n ; ", None])
def test_empty_topics_subscribe_a_reader_of_the_trending_papers(client, session, outbox, settings, topics):
    data = {"csrf_token": csrf_token(client), "email": "ana@example.org"}
    if topics is not None:  # None: the field is not sent at all
        data["topics"] = topics
    answer = client.post("/subscribe", data=data)
    assert answer.status_code == 303 and answer.headers["location"] == "/subscribed"
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.status == SubscriberStatus.pending and subscriber.topics == []
    [message] = sent_messages(outbox)
    text = message.get_body(("plain",)).get_content()
    assert "a digest of the day's trending papers" in text and "these topics" not in text
    assert "a digest of the day's trending papers" in Elements(message.get_body(("html",)).get_content()).visible_text
    # The link's page says what is confirmed, and its button makes a trending reader.
    link = re.sub(r"^https?://[^/]+", "", confirm_link(message))
    page = client.get(link)
    assert page.status_code == 200 and "the day's trending papers" in Elements(page.text).visible_text
    assert client.post(link, data={"csrf_token": csrf_token(client, link)}).status_code == 303
    session.expire_all()
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.status == SubscriberStatus.active and subscriber.topics == []


def test_subscribing_stores_a_pending_subscriber_and_sends_one_confirmation(client, session, outbox):
    answer = post_subscribe(client, email="  Ana.Ruiz@Example.ORG ", timezone="Europe/Berlin", hour="6")
    assert answer.status_code == 303 and answer.headers["location"] == "/subscribed"
    subscriber = session.scalars(select(Subscriber)).one()
    assert subscriber.email == "ana.ruiz@example.org"
    assert subscriber.status == SubscriberStatus.pending
    assert [t.query for t in subscriber.topics] == ["pretraining", "diffusion -video"]
    assert (subscriber.timezone, subscriber.delivery_hour) == ("Europe/Berlin", 6)
    [message] = sent_messages(outbox)
    assert message["To"] == "ana.ruiz@example.org"
    assert confirm_link(message).startswith("http://digest.test/confirm/")
    assert "Check your inbox" in client.get("/subscribed").text


def test_topics_split_on_lines_semicolons_and_commas_outside_quotes(client, session):
    post_subscribe(client, topics='pretraining; "agents, tools" robot*\r\ndiffusion, speech')
    subscriber = session.scalars(select(Subscriber)).one()
    assert [t.query for t in subscriber.topics] == ["pretraining", '"agents, tools" robot*', "diffusion", "speech"]


def test_the_answer_is_the_same_for_a_new_a_pending_and_an_active_address(client, session):
    make_subscriber(session, "active@example.org", ["agents"], status=SubscriberStatus.active)
    make_subscriber(session, "pending@example.org", ["agents"], status=SubscriberStatus.pending)
    pages = []
    for email in ("new@example.org", "pending@example.org", "active@example.org"):
        answer = post_subscribe(client, email=email)
        assert answer.status_code == 303
        pages.append(client.get(answer.headers["location"]).text)
    assert "Check your inbox" in pages[0]
    assert pages[0] == pages[1] == pages[2]


def test_an_active_address_keeps_its_topics_when_a_stranger_subscribes_it(client, session, outbox):
    subscriber = make_subscriber(session, "active@example.org", ["agents"], status=SubscriberStatus.active)
    post_subscribe(client, email="active@example.org", topics="something else")
    subscriber = session.get(Subscriber, subscriber.id)  # the app's request closed the session
    assert [t.query for t in subscriber.topics] == ["agents"]
    assert outbox.written == []


def test_repeated_requests_for_one_address_send_at_most_one_more_confirmation_an_hour(client, outbox):
    for _ in range(5):
        assert post_subscribe(client, email="ana@example.org").status_code == 303
    assert len(outbox.written) == 2


def test_a_client_sending_many_requests_gets_429(settings, session_factory, outbox, session):
    from fastapi.testclient import TestClient

    from digest.web import create_app

    limiter = RateLimiter(3, window=3600, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    assert limiter.backend == "redis"
    app = create_app(settings, sessions=session_factory, limiter=limiter, transport=outbox)
    with TestClient(app, base_url=settings.base_url, follow_redirects=False) as client:
        codes = [post_subscribe(client, email=f"r{i}@example.org").status_code for i in range(5)]
    assert codes == [303, 303, 303, 429, 429]
    assert count(session) == 3


def test_the_in_process_limiter_counts_when_redis_is_not_there():
    limiter = RateLimiter(2, window=3600, redis_url="redis://127.0.0.1:1/0")
    assert limiter.backend == "memory"
    assert [limiter.allow("1.2.3.4") for _ in range(3)] == [True, True, False]
    assert limiter.allow("5.6.7.8")


def test_a_bad_email_address_is_refused_and_nothing_is_stored(client, session, outbox):
    for email in ("not-an-address", "ana@", "@example.org", "ana@example..org", ""):
        answer = post_subscribe(client, email=email)
        assert answer.status_code == 422, email
        assert "<li>Email address: " in answer.text
    assert count(session) == 0 and outbox.written == []


def test_a_line_break_in_the_email_field_is_refused_before_any_header(client, session, outbox):
    for email in ("ana@example.org\r\nBcc: victim@example.org", "ana@example.org\nX: y", "ana@exa\rmple.org"):
        answer = post_subscribe(client, email=email)
        assert answer.status_code == 422 and "Email address: must be one line of text" in answer.text
    answer = post_subscribe(client, timezone="UTC\r\nBcc: x@example.org")
    assert answer.status_code == 422 and "Time zone: must be one line of text" in answer.text
    assert count(session) == 0 and outbox.written == []


def test_a_topic_that_does_not_parse_is_shown_with_its_error_and_nothing_is_stored(client, session, outbox):
    answer = post_subscribe(client, topics='pretraining\n"unclosed phrase')
    assert answer.status_code == 422
    assert "<code>&#34;unclosed phrase</code>" in answer.text or "<code>&quot;unclosed phrase</code>" in answer.text
    assert "Nothing was saved" in answer.text
    # What was typed stays in the form.
    assert "ana@example.org" in answer.text
    assert count(session) == 0 and count(session, Topic) == 0 and outbox.written == []


def test_unknown_zone_and_bad_hour_are_refused(client, session):
    assert "unknown time zone" in post_subscribe(client, timezone="Mars/Olympus").text
    assert post_subscribe(client, hour="24").status_code == 422
    assert post_subscribe(client, hour="seven").status_code == 422
    assert count(session) == 0


def test_too_many_or_too_long_topics_are_refused(client, session):
    assert post_subscribe(client, topics="\n".join(f"topic{i}" for i in range(21))).status_code == 422
    assert post_subscribe(client, topics="x" * 201).status_code == 422
    assert count(session) == 0


def test_a_post_without_the_csrf_token_is_refused(client, session, settings):
    client.get("/")  # sets the cookie
    answer = client.post("/subscribe", data={"email": "ana@example.org", "topics": "agents"})
    assert answer.status_code == 403
    forged = client.post("/subscribe", data={"email": "ana@example.org", "topics": "agents", "csrf_token": "x.y"})
    assert forged.status_code == 403
    assert count(session) == 0


def test_a_token_from_another_browser_does_not_pass(app, client, session, settings):
    from fastapi.testclient import TestClient

    token_of_other_browser = csrf_token(client)
    with TestClient(app, base_url=settings.base_url, follow_redirects=False) as victim:
        victim.get("/")
        answer = victim.post(
            "/subscribe", data={"email": "ana@example.org", "topics": "agents", "csrf_token": token_of_other_browser}
        )
    assert answer.status_code == 403
    assert count(session) == 0


def test_pages_send_security_headers(client):
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_unknown_page_is_an_html_404(client):
    answer = client.get("/nothing-here")
    assert answer.status_code == 404 and "Page not found" in answer.text


def test_an_address_that_needs_smtputf8_is_refused_on_the_form_and_nothing_is_stored(client, session, outbox):
    answer = post_subscribe(client, email="é@example.org")
    assert answer.status_code == 422
    assert "Email address: this address has non-ASCII characters before the @" in answer.text
    assert "é@example.org" in answer.text  # what was typed stays in the form
    assert count(session) == 0 and outbox.written == []


def test_topics_past_the_limits_are_named_with_the_limit_on_the_form(client, session):
    answer = post_subscribe(client, topics="pretraining\nab* cd* ef* gh* ij*\n" + "word " * 13)
    assert answer.status_code == 422 and "Nothing was saved" in answer.text
    assert "<code>ab* cd* ef* gh* ij*</code>: has more than the 4 prefixes (word*) a topic may have" in answer.text
    assert "has more than the 12 words a topic may have: split it into several topics" in answer.text
    assert count(session) == 0
