"""The read side. search(): the store's papers (or one edition's) that a query matches, as a digest ranks them."""

from __future__ import annotations

from datetime import date

import pytest

from sqlalchemy import update

from digest.matching import QueryError
from digest.models import Feedback, Subscriber, SubscriberStatus
from digest.read import preview_topics, search, stats
from tests.delivery.helpers import EDITION, add_sample_papers
from tests.delivery.test_compose_relevance import older_papers
from tests.factories import make_paper, make_subscriber


@pytest.fixture
def stored(session):
    return {
        "title": make_paper(session, id="2611.00101", title="Pre-Training at scale", edition=date(2026, 11, 25)),
        "abstract": make_paper(
            session, id="2611.00102", title="Scaling", abstract="We study pretraining.", upvotes=3,
            edition=date(2026, 11, 26),
        ),
        "none": make_paper(session, id="2611.00103", title="Robots", abstract="", authors=[], edition=date(2026, 11, 26)),
    }


def test_search_ranks_every_matching_paper_in_the_store(session, stored):
    matches = search(session, "pretraining")
    assert [m.paper.id for m in matches] == ["2611.00101", "2611.00102"]
    assert [m.matched for m in matches] == [("Pre-Training",), ("pretraining",)]
    assert matches[0].score > matches[1].score


def test_search_one_edition(session, stored):
    assert [m.paper.id for m in search(session, "pretraining", edition=date(2026, 11, 26))] == ["2611.00102"]
    assert search(session, "pretraining", edition=date(2020, 1, 1)) == []


def test_search_limit(session, stored):
    assert [m.paper.id for m in search(session, "pretraining", limit=1)] == ["2611.00101"]


def test_search_refuses_a_bad_query_before_reading_the_store(session, stored):
    with pytest.raises(QueryError, match=r"topic 'x \(y': unclosed parenthesis at column 3"):
        search(session, "x (y")


def test_papers_without_abstract_or_authors_are_searchable(session, stored):
    assert [m.paper.id for m in search(session, "robots")] == ["2611.00103"]
    assert [m.paper.id for m in search(session, "author:ruiz")] == ["2611.00102", "2611.00101"]  # upvotes


def test_stats_count_by_status(session, settings):
    make_subscriber(session, "a@example.org", ["agents"], status=SubscriberStatus.active)
    make_subscriber(session, "b@example.org", ["agents", "robots"], status=SubscriberStatus.pending)
    figures = stats(session)
    assert figures["subscribers"] == {"pending": 1, "active": 1, "unsubscribed": 0}
    assert figures["top_topics"][0] == {"topic": "agents", "subscribers": 2}


def test_the_settings_preview_of_a_reader_is_in_their_own_order_with_reasons(session):
    edition = add_sample_papers(session, EDITION)
    liked, disliked = older_papers(session)
    reader = make_subscriber(session, "reader@example.org", ["pretraining"])
    session.add_all([Feedback(subscriber_id=reader.id, paper_id=p.id, liked=True) for p in liked])
    session.add_all([Feedback(subscriber_id=reader.id, paper_id=p.id, liked=False) for p in disliked])
    session.execute(update(Subscriber).where(Subscriber.id == reader.id).values(feedback_version=1))
    session.flush()
    session.refresh(reader)
    anyone = preview_topics(session, "pretraining", 10)
    theirs = preview_topics(session, "pretraining", 10, subscriber=reader)
    assert theirs.papers != anyone.papers and len(theirs.papers) == 10
    assert len(theirs.reasons) == 10 and all(r.startswith("matched: ") for r in anyone.reasons)
    assert any(r.endswith(f"Like: {liked[2].title}") or r.endswith(f"Like: {liked[0].title}") for r in theirs.reasons)
    # Learning off: the reader previews what anyone with these topics would get.
    session.execute(update(Subscriber).where(Subscriber.id == reader.id).values(learn_from_feedback=False))
    session.refresh(reader)
    assert preview_topics(session, "pretraining", 10, subscriber=reader).papers == anyone.papers
    # No topics: the edition's trending papers, each with its upvotes.
    hot = preview_topics(session, "", 3)
    assert hot.papers == sorted(edition, key=lambda p: (-p.upvotes, p.id))[:3]
    assert hot.total == len(edition)
    assert hot.reasons == [f"{p.upvotes} upvote{'s' if p.upvotes != 1 else ''}" for p in hot.papers]
