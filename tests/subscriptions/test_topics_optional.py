"""Topics are optional (issue 11): a reader without any gets the day's trending papers. Every way
in accepts none: the checks the forms share, the settings save, `digest import`, and the
confirmation email says in words what such a reader signed up for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from digest.mail import OutboxTransport
from digest.models import Subscriber, SubscriberStatus
from digest.subscriptions import SettingsForm, import_csv, update_settings
from digest.subscriptions.validation import InvalidInput, TopicErrors, clean_topics, read_subscribe_request
from tests.factories import make_subscriber
from tests.mail.helpers import Elements, body, parse


@pytest.mark.parametrize("typed", ["", " \n ; ", ";;", [], [""], ["  "]])
def test_no_topics_is_a_choice_not_an_error(typed):
    assert clean_topics(typed) == []
    assert read_subscribe_request("Ana@Example.org", typed).topics == ()


def test_bad_topics_are_still_refused_and_the_limits_still_hold():
    with pytest.raises(TopicErrors):
        clean_topics("(broken")
    with pytest.raises(InvalidInput, match="at most 20 topics"):
        clean_topics([f"topic{i}" for i in range(21)])


def test_saving_settings_with_empty_topics_makes_a_trending_reader(session):
    subscriber = make_subscriber(session, "ana@example.org", ["pretraining", "diffusion"], status=SubscriberStatus.active)
    update_settings(session, subscriber, SettingsForm(topics=" \n "))
    session.commit()
    session.expire_all()
    assert session.get(Subscriber, subscriber.id).topics == []


@pytest.fixture
def outbox(tmp_path):
    return OutboxTransport(tmp_path / "sent")


def test_import_takes_an_empty_topics_cell_and_says_trending_in_the_confirmation(
        session, session_factory, settings, outbox, tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("email,topics,timezone,hour\nana@example.org,,Europe/Paris,6\nbo@example.org,\n"
                      "cy@example.org,agents\n")
    report = import_csv(session_factory, source, settings, transport=outbox)
    assert report.errors == [] and report.added == 3 and report.confirmations == 3
    session.expire_all()
    found = {s.email: s for s in session.scalars(select(Subscriber))}
    assert found["ana@example.org"].topics == [] and found["ana@example.org"].timezone == "Europe/Paris"
    assert found["bo@example.org"].topics == [] and found["bo@example.org"].status == SubscriberStatus.pending
    assert [t.query for t in found["cy@example.org"].topics] == ["agents"]
    session.commit()
    messages = {parse(path.read_bytes())["To"]: parse(path.read_bytes()) for path in outbox.written}
    for address in ("ana@example.org", "bo@example.org"):
        text = body(messages[address], "plain")
        assert "a digest of the day's trending papers" in text and "these topics" not in text
        assert "a digest of the day's trending papers" in Elements(body(messages[address], "html")).visible_text
    assert "a digest of new papers on these topics:\n\n  - agents\n" in body(messages["cy@example.org"], "plain")


def test_an_import_line_without_its_topics_cell_or_with_too_many_cells_is_still_refused(
        session_factory, settings, outbox, tmp_path):
    source = tmp_path / "people.csv"
    source.write_text("ana@example.org,agents,UTC,6,extra\nbo@example.org\n")
    report = import_csv(session_factory, source, settings, transport=outbox)
    message = "expected email, topics (may be empty) and optionally timezone and hour"
    assert report.errors == [(1, message), (2, message)] and report.added == 0
