"""The library behind the pages and commands: validation, double opt-in, limits, lifecycle."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import insert, select

from digest import subscriptions as subs
from digest.mail import OutboxTransport, TransientFailure
from digest.models import Subscriber, SubscriberStatus, Suppression
from digest.tokens import InvalidToken, make_token, read_token, verify_token
from tests.factories import make_subscriber

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def outbox(tmp_path):
    return OutboxTransport(tmp_path / "sent")


def test_split_topics_lines_semicolons_and_commas_outside_quotes():
    text = 'pretraining\r\n  diffusion   -video ;author:"Ruiz, Ana", robot*\n\n"a, b; c"'
    # A semicolon always separates; a comma only outside quotes.
    assert subs.split_topics(text) == ["pretraining", "diffusion -video", 'author:"Ruiz, Ana"', "robot*", '"a, b', 'c"']


@given(st.text())
def test_split_topics_never_crashes_and_never_returns_a_line_break(text):
    for topic in subs.split_topics(text):
        assert topic and "\n" not in topic and "\r" not in topic


@pytest.mark.parametrize("raw,stored", [
    ("Ana@Example.org", "ana@example.org"),
    ("  bo@EXAMPLE.ORG  ", "bo@example.org"),
    ("ana+papers@example.org", "ana+papers@example.org"),
])
def test_addresses_are_normalised(raw, stored):
    assert subs.normalise_email(raw) == stored


@pytest.mark.parametrize("bad", [
    "", "plain", "a@", "@b.org", "a@b..org", "a b@c.org", "ana@example.org\r\nBcc: x@y.org", "ana@example.org\n",
    "ana\x00@example.org", "a@localhost",
])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(subs.InvalidInput) as caught:
        subs.normalise_email(bad)
    assert "email" in caught.value.errors


def test_topics_are_checked_by_the_query_parser_and_every_bad_one_is_named():
    with pytest.raises(subs.TopicErrors) as caught:
        subs.clean_topics(["pretraining", "(graph", 'title:"open', "fine"])
    assert [t for t, _ in caught.value.topic_errors] == ["(graph", 'title:"open']
    assert all(message for _, message in caught.value.topic_errors)


def test_duplicate_topics_collapse_to_the_first_spelling():
    assert subs.clean_topics(["LLMs", "llm", "pretraining"]) == ["LLMs", "pretraining"]


def test_subscribe_sends_one_confirmation_with_a_link_and_the_topics(session, settings, outbox):
    subscriber = subs.subscribe(session, "Ana@Example.org", "pretraining; agents", settings, now=NOW, transport=outbox)
    assert subscriber.status == SubscriberStatus.pending and subscriber.next_due_at is None
    [path] = outbox.written
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "ana@example.org" and message["Auto-Submitted"] == "auto-generated"
    body = message.get_body(("plain",)).get_content()
    assert "http://digest.test/confirm/" in body and "pretraining" in body and "agents" in body


def test_confirmations_are_capped_at_two_an_hour_per_address(session, settings, outbox):
    for minute in range(0, 50, 10):
        subs.subscribe(session, "ana@example.org", "agents", settings, now=NOW + timedelta(minutes=minute), transport=outbox)
    assert len(outbox.written) == 2
    subs.subscribe(session, "ana@example.org", "agents", settings, now=NOW + timedelta(minutes=61), transport=outbox)
    assert len(outbox.written) == 3


def test_a_mail_failure_keeps_the_subscriber_and_lets_a_later_request_retry(session, settings, outbox):
    class Down:
        def send(self, *args):
            raise TransientFailure("421 try later")

    outcome = subs.subscribe_request(session, "ana@example.org", "agents", settings, now=NOW, transport=Down())
    assert outcome.subscriber.status == SubscriberStatus.pending and not outcome.confirmation_sent
    assert outcome.subscriber.confirmations_sent == 0
    subs.subscribe(session, "ana@example.org", "agents", settings, now=NOW, transport=outbox)
    assert len(outbox.written) == 1


def test_confirmed_subscribe_sends_nothing_and_schedules(session, settings, outbox):
    subscriber = subs.subscribe(session, "ana@example.org", ["agents"], settings, timezone="Asia/Tokyo", hour=8,
                                confirmed=True, now=NOW, transport=outbox)
    assert subscriber.status == SubscriberStatus.active and outbox.written == []
    # 08:00 in Tokyo is 23:00 UTC the day before: the next one after 09:00 UTC on the 26th.
    assert subscriber.next_due_at == datetime(2026, 11, 26, 23, 0, tzinfo=UTC)


def confirmation_claims(path, settings):
    """The claims of the confirmation link in an email written to the outbox."""
    body = message_from_bytes(path.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    return verify_token(re.search(r"/confirm/(\S+)", body).group(1), "confirm", settings)


def test_a_suppressed_active_address_must_confirm_again(session, settings, outbox):
    make_subscriber(session, "ana@example.org", ["agents"], status=SubscriberStatus.active)
    session.add(Suppression(email="ana@example.org", reason="550 no such user"))
    session.flush()
    subscriber = subs.subscribe(session, "ana@example.org", ["robots"], settings, now=NOW, transport=outbox)
    # The request only sends a confirmation (anyone may have asked): the row waits for its owner,
    # and stays suppressed, so nothing else is sent.
    assert len(outbox.written) == 1 and [t.query for t in subscriber.topics] == ["agents"]
    assert session.get(Suppression, "ana@example.org") is not None
    subs.confirm_link(session, subscriber, confirmation_claims(outbox.written[0], settings).request, now=NOW)
    assert session.get(Suppression, "ana@example.org") is None and subscriber.status == SubscriberStatus.active
    assert [t.query for t in subscriber.topics] == ["robots"]


def test_a_request_for_a_pending_address_changes_nothing_its_confirmation_carries_the_request(session, settings, outbox):
    owner = subs.subscribe(session, "ana@example.org", "pretraining", settings, timezone="Europe/Berlin", hour=6,
                           now=NOW, transport=outbox)
    first = confirmation_claims(outbox.written[-1], settings)  # the outbox keeps one file per address
    subs.subscribe(session, "ana@example.org", "something else", settings, timezone="Asia/Tokyo", hour=22,
                   now=NOW + timedelta(minutes=1), transport=outbox)
    second = confirmation_claims(outbox.written[-1], settings)
    assert len(outbox.written) == 2
    assert [t.query for t in owner.topics] == ["pretraining"] and (owner.timezone, owner.delivery_hour) == ("Europe/Berlin", 6)
    assert subs.topics_to_confirm(owner, first.request) == ["pretraining"]
    assert subs.topics_to_confirm(owner, second.request) == ["something else"]
    subs.confirm_link(session, owner, first.request, now=NOW)  # the owner confirms their own request
    assert owner.status == SubscriberStatus.active and [t.query for t in owner.topics] == ["pretraining"]
    assert (owner.timezone, owner.delivery_hour) == ("Europe/Berlin", 6)
    subs.confirm_link(session, owner, second.request, now=NOW)  # already confirmed: the other changes nothing
    assert [t.query for t in owner.topics] == ["pretraining"]


def test_a_request_for_an_unsubscribed_address_keeps_its_links_until_the_owner_restarts(session, settings, outbox):
    owner = make_subscriber(session, "ana@example.org", ["agents"], status=SubscriberStatus.active)
    unsubscribe_link = make_token(owner, "unsubscribe", settings)
    subs.unsubscribe(session, owner, now=NOW)
    subs.subscribe(session, "ana@example.org", "robots", settings, now=NOW + timedelta(minutes=5), transport=outbox)
    assert owner.status == SubscriberStatus.unsubscribed and [t.query for t in owner.topics] == ["agents"]
    assert read_token(session, unsubscribe_link, "unsubscribe", settings) is owner  # still theirs
    subs.confirm_link(session, owner, confirmation_claims(outbox.written[-1], settings).request, now=NOW)
    assert owner.status == SubscriberStatus.active and [t.query for t in owner.topics] == ["robots"]
    with pytest.raises(InvalidToken):  # a restart renews the links
        read_token(session, unsubscribe_link, "unsubscribe", settings)


def test_a_confirmation_link_made_before_an_unsubscribe_does_not_undo_it(session, settings, outbox):
    owner = subs.subscribe(session, "ana@example.org", "agents", settings, now=NOW, transport=outbox)
    claims = confirmation_claims(outbox.written[0], settings)
    subs.unsubscribe(session, owner, now=NOW + timedelta(minutes=1))
    with pytest.raises(subs.InvalidInput):
        subs.confirm_link(session, owner, claims.request, now=NOW)
    assert owner.status == SubscriberStatus.unsubscribed


def test_an_address_that_needs_smtputf8_is_refused_before_anything_is_stored(session, settings, outbox):
    with pytest.raises(subs.InvalidInput) as caught:
        subs.subscribe(session, "é@example.org", "agents", settings, now=NOW, transport=outbox)
    assert "non-ASCII characters before the @" in caught.value.errors["email"]
    assert session.scalars(select(Subscriber)).all() == [] and outbox.written == []
    assert subs.normalise_email("ana@bücher.de") == "ana@bücher.de"  # an accented domain is IDNA-encoded: fine


def test_update_settings_validates_everything_before_writing(session):
    subscriber = make_subscriber(session, topics=["agents"])
    with pytest.raises(subs.InvalidInput) as caught:
        subs.update_settings(session, subscriber, subs.SettingsForm(topics="robots\n(bad", hour="30", max_papers="5"))
    assert "hour" in caught.value.errors and caught.value.topic_errors[0][0] == "(bad"
    assert [t.query for t in subscriber.topics] == ["agents"] and subscriber.max_papers == 10


def test_unsubscribe_is_idempotent_and_clears_the_schedule(session):
    subscriber = make_subscriber(session, next_due_at=NOW)
    subs.unsubscribe(session, subscriber, now=NOW)
    first = subscriber.unsubscribed_at
    subs.unsubscribe(session, subscriber, now=NOW + timedelta(hours=1))
    assert subscriber.unsubscribed_at == first and subscriber.next_due_at is None


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(session, session_factory, settings, outbox):
    csv_text = (
        "email,topics,timezone,hour\n"
        "ana@example.org,pretraining; agents,Europe/Berlin,6\n"
        "not-an-address,agents\n"
        "bo@example.org,(broken\n"
        "cy@example.org,diffusion,Mars/Base,7\n"
        "dee@example.org,diffusion,,25\n"
        "eve@example.org\n"
        "\n"
        "fay@example.org,robot*\n"
    )
    report = subs.import_csv(session_factory, io.StringIO(csv_text), settings, transport=outbox)
    assert report.added == 2
    assert [line for line, _ in report.errors] == [3, 4, 5, 6, 7]
    emails = session.scalars(select(Subscriber.email).order_by(Subscriber.email)).all()
    assert emails == ["ana@example.org", "fay@example.org"]
    assert len(outbox.written) == 2  # double opt-in for imported addresses too


def test_a_deferred_confirmation_is_sent_after_commit_and_only_while_pending(session, settings, outbox):
    outcome = subs.subscribe_request(session, "ana@example.org", "agents", settings, now=NOW, defer_confirmation=True)
    assert outcome.confirmation_due and outbox.written == []
    assert subs.send_due_confirmation(session, outcome.subscriber.id, settings, now=NOW, transport=outbox)
    assert len(outbox.written) == 1
    subs.confirm(session, outcome.subscriber, now=NOW)
    assert not subs.send_due_confirmation(session, outcome.subscriber.id, settings, now=NOW, transport=outbox)
    assert not subs.send_due_confirmation(session, 999_999, settings, now=NOW, transport=outbox)
    assert len(outbox.written) == 1


def test_a_row_inserted_by_a_concurrent_request_is_reused_not_an_error(session, settings, outbox):
    # Another request inserted the address a moment ago (tests/web/test_concurrency.py races them for real).
    session.execute(insert(Subscriber).values(email="ana@example.org", status=SubscriberStatus.pending, created_at=NOW))
    outcome = subs.subscribe_request(session, "ana@example.org", "agents", settings, now=NOW, transport=outbox)
    assert not outcome.created and outcome.confirmation_sent
    assert session.scalars(select(Subscriber)).one() is outcome.subscriber
    assert subs.topics_to_confirm(outcome.subscriber, confirmation_claims(outbox.written[0], settings).request) == ["agents"]
