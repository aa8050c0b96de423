"""Pages reached from signed links: confirm, settings (with live preview), unsubscribe, export,
delete, the full edition. A GET never changes anything; a bad link gets a 4xx page and changes nothing."""

from __future__ import annotations

import json
import re
import time
from datetime import date

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from digest.config import load_settings
from digest.mail import confirm_url, settings_url, unsubscribe_url, view_url
from digest.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus, Suppression, Topic
from digest.tokens import make_token, rotate_tokens
from tests.factories import make_paper, make_subscriber
from tests.web.conftest import confirm_link, csrf_token, sent_messages

EDITION = date(2026, 11, 26)


def path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def reload(session, subscriber_id: int) -> Subscriber | None:
    session.expire_all()
    return session.get(Subscriber, subscriber_id)


@pytest.fixture
def pending(session):
    return make_subscriber(session, "ana@example.org", ["pretraining", "diffusion"], status=SubscriberStatus.pending)


@pytest.fixture
def active(session):
    return make_subscriber(session, "bo@example.org", ["pretraining", "diffusion"], status=SubscriberStatus.active)


@pytest.fixture
def papers(session):
    return [
        make_paper(session, title="Efficient Pre-Training of Language Models", upvotes=30, edition=EDITION),
        make_paper(session, title="Pretraining Vision Transformers at Scale", upvotes=10, edition=EDITION),
        make_paper(session, title="Video Diffusion without Tears", upvotes=5, edition=EDITION),
        make_paper(session, title="Graph Neural Networks for Chemistry", upvotes=50, edition=EDITION),
    ]


# ---------------------------------------------------------------- confirm


def test_opening_the_confirmation_link_shows_a_button_and_confirms_nothing(client, session, pending, settings):
    page = client.get(path(confirm_url(pending, settings)))
    assert page.status_code == 200
    assert "Confirm subscription" in page.text and "<code>pretraining</code>" in page.text
    assert reload(session, pending.id).status == SubscriberStatus.pending


def test_pressing_the_button_confirms_and_opens_the_settings(client, session, pending, settings):
    url = path(confirm_url(pending, settings))
    answer = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/settings/")
    subscriber = reload(session, pending.id)
    assert subscriber.status == SubscriberStatus.active and subscriber.confirmed_at is not None
    assert subscriber.next_due_at is not None  # delivery's schedule now knows when to send
    assert "Your subscription is confirmed" in client.get(answer.headers["location"]).text


def test_confirming_without_the_form_token_is_refused(client, session, pending, settings):
    client.get("/")
    answer = client.post(path(confirm_url(pending, settings)), data={})
    assert answer.status_code == 403
    assert reload(session, pending.id).status == SubscriberStatus.pending


def test_confirming_lifts_a_suppression(client, session, pending, settings):
    session.add(Suppression(email=pending.email, reason="550 mailbox unavailable"))
    session.flush()
    url = path(confirm_url(pending, settings))
    client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert session.get(Suppression, "ana@example.org") is None


def tampered(token: str) -> str:
    """One character of the signature changed, mid-way (the last one may carry only padding bits)."""
    head, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    return f"{head}.{signature[:middle]}{'A' if signature[middle] != 'A' else 'B'}{signature[middle + 1:]}"


def bad_links(subscriber, settings, purpose):
    good = make_token(subscriber, purpose, settings)
    other = "settings" if purpose != "settings" else "unsubscribe"
    foreign_key = load_settings(database_url=settings.database_url, secret_key="another-server's-secret-key-0123456789")
    return {
        "tampered": tampered(good),
        "truncated": good[: len(good) // 2],
        "other purpose": make_token(subscriber, other, settings),
        "other key": make_token(subscriber, purpose, foreign_key),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("purpose,prefix", [("confirm", "/confirm/"), ("settings", "/settings/"), ("unsubscribe", "/unsubscribe/")])
def test_a_bad_link_gets_a_4xx_page_on_get_and_post_and_changes_nothing(client, session, settings, purpose, prefix):
    status = SubscriberStatus.pending if purpose == "confirm" else SubscriberStatus.active
    subscriber = make_subscriber(session, "eve@example.org", ["agents", "robots"], status=status)
    for name, token in bad_links(subscriber, settings, purpose).items():
        page = client.get(prefix + token)
        assert page.status_code == 400, name
        assert "This link is not valid" in page.text
        form = {"csrf_token": csrf_token(client), "topics": "other", "hour": "3", "List-Unsubscribe": "One-Click"}
        assert client.post(prefix + token, data=form).status_code == 400, name
    after = reload(session, subscriber.id)
    assert after.status == status and [t.query for t in after.topics] == ["agents", "robots"]
    assert after.delivery_hour == 7


def test_an_expired_confirmation_link_gets_410_and_confirms_nothing(client, session, pending, settings, monkeypatch):
    eight_days_ago = int(time.time()) - 8 * 86400
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
    url = path(confirm_url(pending, settings))
    monkeypatch.undo()
    assert client.get(url).status_code == 410
    assert client.post(url, data={"csrf_token": csrf_token(client)}).status_code == 410
    assert reload(session, pending.id).status == SubscriberStatus.pending


def test_rotating_the_token_version_kills_old_links(client, session, active, settings):
    old_settings, old_unsub = path(settings_url(active, settings)), path(unsubscribe_url(active, settings))
    rotate_tokens(active)
    session.flush()
    assert client.get(old_settings).status_code == 400
    assert client.post(old_unsub, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert reload(session, active.id).status == SubscriberStatus.active
    assert client.get(path(settings_url(reload(session, active.id), settings))).status_code == 200


# ---------------------------------------------------------------- settings


def settings_form(client, url, **changes):
    data = {"csrf_token": csrf_token(client, url), "topics": "pretraining\ndiffusion", "frequency": "daily",
            "weekday": "0", "hour": "7", "timezone": "UTC", "max_papers": "10"}
    data.update(changes)
    return client.post(url, data=data)


def test_settings_page_shows_current_values_and_the_preview(client, active, papers, settings):
    page = client.get(path(settings_url(active, settings)))
    assert page.status_code == 200
    assert "pretraining\ndiffusion</textarea>" in page.text
    # pretraining: two papers (both spellings); diffusion: one. Graph papers never.
    assert "would have sent you <strong>3</strong> papers" in page.text
    assert "Efficient Pre-Training of Language Models" in page.text
    assert "Graph Neural Networks" not in page.text


def test_saving_settings_changes_everything_and_reschedules(client, session, active, settings):
    url = path(settings_url(active, settings))
    before = reload(session, active.id).next_due_at
    answer = settings_form(client, url, topics="agents; robot*", frequency="weekly", weekday="4", hour="18",
                           timezone="America/New_York", max_papers="25", notify_empty="on")
    assert answer.status_code == 303 and "saved=1" in answer.headers["location"]
    s = reload(session, active.id)
    assert [t.query for t in s.topics] == ["agents", "robot*"]
    assert (s.frequency.value, s.weekday, s.delivery_hour, s.timezone, s.max_papers, s.notify_empty) == (
        "weekly", 4, 18, "America/New_York", 25, True)
    assert s.next_due_at != before and s.next_due_at.weekday() in (4, 5)  # Friday 18:00 New York, in UTC
    assert "Your settings are saved" in client.get(answer.headers["location"]).text


@pytest.mark.parametrize(
    "field,value,shown",
    [
        ("topics", 'pretraining\n(diffusion OR', "Nothing was saved"),
        ("hour", "25", "Delivery hour: must be from 0 to 23"),
        ("hour", "-1", "Delivery hour"),
        ("max_papers", "51", "Papers per email: must be"),
        ("max_papers", "0", "Papers per email: must be"),
        ("max_papers", "ten", "Papers per email: must be"),
        ("frequency", "hourly", "daily or weekly"),
        ("weekday", "7", "Weekly on: must be from 0 to 6"),
        ("timezone", "Europe/Atlantis", "unknown time zone"),
        ("timezone", "UTC\r\nBcc: x@example.org", "Time zone: must be one line"),
    ],
)
def test_a_bad_field_is_shown_with_its_error_and_nothing_is_saved(client, session, active, settings, field, value, shown):
    url = path(settings_url(active, settings))
    answer = settings_form(client, url, **{"hour": "9", "topics": "agents", field: value})
    assert answer.status_code == 422
    assert shown in answer.text
    s = reload(session, active.id)
    assert [t.query for t in s.topics] == ["pretraining", "diffusion"] and s.delivery_hour == 7


def test_a_bad_topic_is_named_next_to_its_error(client, active, settings):
    answer = settings_form(client, path(settings_url(active, settings)), topics='agents\ntitle:"unclosed')
    assert answer.status_code == 422
    assert re.search(r"<li><code>title:&#34;unclosed</code>: .+</li>", answer.text), answer.text
    # What was typed stays in the box, so nothing is lost.
    assert "agents\ntitle:&#34;unclosed</textarea>" in answer.text


def test_the_live_preview_answers_for_the_topics_being_typed(client, active, papers, settings):
    url = path(settings_url(active, settings)) + "/preview"
    data = client.get(url, params={"topics": "diffusion", "max_papers": "10"}).json()
    assert data["total"] == 1 and [p["title"] for p in data["papers"]] == ["Video Diffusion without Tears"]
    data = client.get(url, params={"topics": "pretraining\ngraph", "max_papers": "2"}).json()
    assert data["total"] == 3 and len(data["papers"]) == 2
    bad = client.get(url, params={"topics": "(graph"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["topic"] == "(graph"
    assert client.get(path(settings_url(active, settings)).replace("/settings/", "/settings/x") + "/preview").status_code == 400


def test_the_live_preview_says_why_each_paper_is_there(client, active, papers, settings):
    url = path(settings_url(active, settings)) + "/preview"
    matched = client.get(url, params={"topics": "diffusion", "max_papers": "10"}).json()["papers"]
    assert [p["reason"] for p in matched] == ["matched: diffusion"]  # the topic that matched, as on the card
    # No topics: the day's trending papers, most upvoted first, each with its upvotes.
    trending = client.get(url, params={"topics": "", "max_papers": "3"}).json()
    assert [(p["title"], p["reason"]) for p in trending["papers"]] == [
        ("Graph Neural Networks for Chemistry", "50 upvotes"),
        ("Efficient Pre-Training of Language Models", "30 upvotes"),
        ("Pretraining Vision Transformers at Scale", "10 upvotes"),
    ]


def test_export_downloads_everything_stored_as_json(client, session, active, settings):
    session.add(Delivery(subscriber_id=active.id, edition=EDITION, status=DeliveryStatus.sent, paper_ids=["2611.00001"]))
    session.flush()
    answer = client.get(path(settings_url(active, settings)) + "/export")
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    data = json.loads(answer.text)
    assert data["email"] == "bo@example.org" and data["topics"] == ["pretraining", "diffusion"]
    assert data["deliveries"] == [{"edition": "2026-11-26", "status": "sent", "sent_at": None, "paper_ids": ["2611.00001"]}]


def test_delete_removes_the_subscriber_and_keeps_anonymous_counts(client, session, active, settings):
    session.add(Delivery(subscriber_id=active.id, edition=EDITION, status=DeliveryStatus.sent,
                         message_id="<x@digest>", paper_ids=["2611.00001"]))
    session.flush()
    url = path(settings_url(active, settings))
    unticked = client.post(url + "/delete", data={"csrf_token": csrf_token(client, url)})
    assert unticked.status_code == 422 and reload(session, active.id) is not None
    answer = client.post(url + "/delete", data={"csrf_token": csrf_token(client, url), "confirm_delete": "yes"})
    assert answer.status_code == 200 and "Your data is deleted" in answer.text
    assert reload(session, active.id) is None
    assert session.scalar(select(func.count()).select_from(Topic)) == 0
    delivery = session.scalars(select(Delivery)).one()
    assert (delivery.subscriber_id, delivery.message_id, delivery.paper_ids, delivery.status) == (None, None, [], DeliveryStatus.sent)
    assert client.get(url).status_code == 400


# ---------------------------------------------------------------- unsubscribe


def test_opening_the_unsubscribe_link_shows_buttons_and_changes_nothing(client, session, active, settings):
    page = client.get(path(unsubscribe_url(active, settings)))
    assert page.status_code == 200 and ">Unsubscribe</button>" in page.text
    assert page.text.count("Drop this topic") == 2
    assert reload(session, active.id).status == SubscriberStatus.active


def test_the_unsubscribe_button_unsubscribes_at_once(client, session, active, settings):
    url = path(unsubscribe_url(active, settings))
    answer = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    s = reload(session, active.id)
    assert s.status == SubscriberStatus.unsubscribed and s.next_due_at is None


def test_dropping_one_topic_keeps_the_subscription(client, session, active, settings):
    url = path(unsubscribe_url(active, settings))
    answer = client.post(url, data={"csrf_token": csrf_token(client, url), "topic": "diffusion"})
    assert answer.status_code == 200 and "Topic dropped" in answer.text
    s = reload(session, active.id)
    assert s.status == SubscriberStatus.active and [t.query for t in s.topics] == ["pretraining"]
    refused = client.post(url, data={"csrf_token": csrf_token(client, url), "topic": "pretraining"})
    assert refused.status_code == 422 and "only topic" in refused.text
    unknown = client.post(url, data={"csrf_token": csrf_token(client, url), "topic": "never had it"})
    assert unknown.status_code == 422


def test_rfc8058_one_click_form_encoded_without_cookies(app, session, active, settings):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=settings.base_url, follow_redirects=False) as mail_provider:
        answer = mail_provider.post(path(unsubscribe_url(active, settings)), content=b"List-Unsubscribe=One-Click",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and "location" not in answer.headers
        # Providers retry: a second POST answers 200 too.
        again = mail_provider.post(path(unsubscribe_url(active, settings)), data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200
    assert reload(session, active.id).status == SubscriberStatus.unsubscribed


def test_rfc8058_one_click_multipart_without_cookies(app, session, active, settings):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=settings.base_url, follow_redirects=False) as mail_provider:
        answer = mail_provider.post(path(unsubscribe_url(active, settings)),
                                    files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert reload(session, active.id).status == SubscriberStatus.unsubscribed


def test_a_post_that_is_neither_one_click_nor_the_form_is_refused(client, session, active, settings):
    client.get("/")
    url = path(unsubscribe_url(active, settings))
    assert client.post(url, data={"List-Unsubscribe": "Yes please"}).status_code == 403
    assert client.post(url, data={}).status_code == 403
    assert reload(session, active.id).status == SubscriberStatus.active


def test_resubscribing_after_unsubscribe_goes_through_double_opt_in_again(client, session, active, settings, outbox):
    old_settings = path(settings_url(active, settings))
    client.post(path(unsubscribe_url(active, settings)), data={"List-Unsubscribe": "One-Click"})
    answer = client.post("/subscribe", data={"csrf_token": csrf_token(client), "email": "BO@example.org", "topics": "agents"})
    assert answer.status_code == 303
    # Until the owner confirms, the request changes nothing (anyone may have sent it): still
    # unsubscribed, same topics, and the owner's links still work.
    s = reload(session, active.id)
    assert s.status == SubscriberStatus.unsubscribed and [t.query for t in s.topics] == ["pretraining", "diffusion"]
    assert client.get(old_settings).status_code == 200
    link = path(confirm_link(sent_messages(outbox)[-1]))
    assert "<code>agents</code>" in client.get(link).text
    client.post(link, data={"csrf_token": csrf_token(client, link)})
    s = reload(session, active.id)
    assert s.status == SubscriberStatus.active and [t.query for t in s.topics] == ["agents"]
    assert client.get(old_settings).status_code == 400  # links from the earlier subscription are dead


def test_a_stranger_cannot_change_what_the_owner_of_a_pending_address_confirms(client, session, settings, outbox):
    client.post("/subscribe", data={"csrf_token": csrf_token(client), "email": "ana@example.org", "topics": "pretraining"})
    owners_link = path(confirm_link(sent_messages(outbox)[-1]))
    client.post("/subscribe", data={"csrf_token": csrf_token(client), "email": "ana@example.org",
                                    "topics": "something else", "timezone": "Asia/Tokyo", "hour": "23"})
    page = client.get(owners_link)
    assert "<code>pretraining</code>" in page.text and "something else" not in page.text
    client.post(owners_link, data={"csrf_token": csrf_token(client, owners_link)})
    s = session.scalars(select(Subscriber).where(Subscriber.email == "ana@example.org")).one()
    session.refresh(s)
    assert s.status == SubscriberStatus.active and [t.query for t in s.topics] == ["pretraining"]
    assert (s.timezone, s.delivery_hour) == ("UTC", 7)


def test_unsubscribed_addresses_cannot_be_confirmed_by_an_old_link(client, session, pending, settings):
    url = path(confirm_url(pending, settings))
    client.post(path(unsubscribe_url(pending, settings)), data={"List-Unsubscribe": "One-Click"})
    answer = client.post(url, data={"csrf_token": csrf_token(client, url)})
    assert answer.status_code == 409
    assert reload(session, pending.id).status == SubscriberStatus.unsubscribed


# ---------------------------------------------------------------- escaping and the full edition


def test_untrusted_text_is_escaped_on_every_page(client, session, settings):
    evil = make_subscriber(session, "x@example.org", ['"<script>alert(1)</script>"', "agents"],
                           status=SubscriberStatus.pending)
    make_paper(session, title="<img src=x onerror=alert(1)> diffusion", edition=EDITION)
    pages = [client.get(path(confirm_url(evil, settings))).text, client.get("/").text]
    evil.status = SubscriberStatus.active
    session.flush()
    pages += [client.get(path(settings_url(evil, settings))).text, client.get(path(unsubscribe_url(evil, settings))).text]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


def test_the_full_edition_page_lists_every_match(client, active, papers, settings):
    page = client.get(path(view_url(active, EDITION, settings)))
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page.text))
    for title in ("Efficient Pre-Training of Language Models", "Pretraining Vision Transformers at Scale",
                  "Video Diffusion without Tears"):
        assert title in text
    assert "Graph Neural" not in text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
    assert client.get(path(view_url(active, EDITION, settings)).replace("2026-11-26", "2026-13-01")).status_code == 404
    settings_token = make_token(active, "settings", settings)
    assert client.get(f"/digest/2026-11-26/{settings_token}").status_code == 400


def test_a_deleted_subscribers_links_do_not_control_whoever_subscribes_next(client, session, settings, outbox, papers):
    """SQLite gave the next subscriber the deleted row's id: the old links then confirmed them,
    exported their address and rewrote their topics."""
    client.post("/subscribe", data={"csrf_token": csrf_token(client), "email": "first@example.org", "topics": "agents"})
    confirm_first = path(confirm_link(sent_messages(outbox)[-1]))
    settings_first = client.post(confirm_first, data={"csrf_token": csrf_token(client, confirm_first)}).headers["location"]
    settings_first = settings_first.split("?")[0]
    client.post(settings_first + "/delete", data={"csrf_token": csrf_token(client, settings_first), "confirm_delete": "yes"})
    client.post("/subscribe", data={"csrf_token": csrf_token(client), "email": "next@example.org", "topics": "robots"})
    following = session.scalars(select(Subscriber).where(Subscriber.email == "next@example.org")).one()
    for old in (confirm_first, settings_first, settings_first + "/export", settings_first + "/preview"):
        answer = client.get(old)
        assert answer.status_code == 400 and "next@example.org" not in answer.text, old
    assert client.post(confirm_first, data={"csrf_token": csrf_token(client)}).status_code == 400
    changed = client.post(settings_first, data={"csrf_token": csrf_token(client), "topics": "stolen", "hour": "3"})
    assert changed.status_code == 400
    following = reload(session, following.id)
    assert following.status == SubscriberStatus.pending and [t.query for t in following.topics] == ["robots"]


def test_topics_past_the_limits_are_refused_on_the_settings_form_with_the_limit(client, session, active, settings):
    many = "\n".join(f"w{n}a w{n}b w{n}c w{n}d w{n}e" for n in range(17))  # 85 words in all
    answer = settings_form(client, path(settings_url(active, settings)), topics=many)
    assert answer.status_code == 422
    assert "Topics: these topics have 85 words together, more than the 80 a subscription may have" in answer.text
    assert [t.query for t in reload(session, active.id).topics] == ["pretraining", "diffusion"]


def test_a_link_with_a_slash_added_redirects_to_the_sites_own_address_whatever_the_host(client, active, settings):
    page = path(settings_url(active, settings))
    answer = client.get(page + "/?confirmed=1")
    assert answer.status_code == 307 and answer.headers["location"] == settings.base_url + page + "?confirmed=1"
    forged = client.get(page + "/", headers={"Host": "evil.example"})
    assert forged.status_code == 400 and "location" not in forged.headers


def test_only_the_sites_own_host_is_served(client, settings):
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "digest.test:443"}).status_code == 200  # DIGEST_BASE_URL's host
    assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200  # this machine (quick start)
    assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200  # load balancers
