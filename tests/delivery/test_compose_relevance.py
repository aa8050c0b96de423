"""What readers' marks and choices change in the digests a batch composes: real rows (PostgreSQL,
or SQLite with DIGEST_TEST_DB=sqlite), real matching, models and rendering."""

from __future__ import annotations

from datetime import date

from digest.delivery import DigestComposer, build_batch, dispatch
from digest.matching import EditionIndex, rank
from sqlalchemy import update

from digest.models import Feedback, Paper, Subscriber
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.factories import make_paper

OLDER = date(2026, 11, 10)
# Three papers a reader liked weeks ago: in-context learning, studied through pretraining data.
LIKED = [
    ("Why in-context learning emerges from the pretraining data distribution",
     "We trace in-context learning of transformers to the structure of pretraining data: bursty, "
     "task-diverse sequences make a model learn in context; we study in-context regression and "
     "supportive pretraining data."),
    ("In-context learning as implicit gradient descent in transformers",
     "A one-layer transformer trained on in-context linear regression implements a step of gradient "
     "descent; we analyse the training dynamics of in-context learning and task diversity."),
    ("Task diversity in pretraining and in-context learning of regression",
     "Pretraining on many regression tasks gives in-context learning beyond the pretraining tasks, "
     "a non-Bayesian in-context learner emerges with task diversity."),
]
DISLIKED = [
    ("Pretraining video diffusion models for text-to-video generation",
     "Video diffusion pretraining on web videos for text-to-video generation and video editing."),
]


def older_papers(session) -> tuple[list[Paper], list[Paper]]:
    liked = [make_paper(session, id=f"2611.{900 + i}", title=t, abstract=a, edition=OLDER) for i, (t, a) in enumerate(LIKED)]
    disliked = [make_paper(session, id=f"2611.{950 + i}", title=t, abstract=a, edition=OLDER)
                for i, (t, a) in enumerate(DISLIKED)]
    return liked, disliked


def mark(session, subscriber, liked, disliked) -> None:
    session.add_all([Feedback(subscriber_id=subscriber.id, paper_id=p.id, liked=True) for p in liked])
    session.add_all([Feedback(subscriber_id=subscriber.id, paper_id=p.id, liked=False) for p in disliked])
    # As recording a mark does: bump the version in the store (the row may be detached by now).
    session.execute(update(Subscriber).where(Subscriber.id == subscriber.id)
                    .values(feedback_version=Subscriber.feedback_version + 1))
    session.flush()


def build(session_factory, settings, composer):
    ids: list[int] = []
    dispatch(session_factory, settings, ids.extend, now=NOW)
    built = build_batch(session_factory, settings, ids, composer)
    assert not built.skipped
    return {job.subscriber.email: composed for job, composed in built.built}, ids


def test_marks_change_the_digest_learning_off_and_suggestions_off_do_what_they_say(session, session_factory, settings):
    edition = add_sample_papers(session, EDITION)
    liked, disliked = older_papers(session)
    due_subscriber(session, "twin@example.org", ["pretraining"])
    learner = due_subscriber(session, "learner@example.org", ["pretraining"])
    off = due_subscriber(session, "off@example.org", ["pretraining"], learn_from_feedback=False)
    quiet = due_subscriber(session, "quiet@example.org", ["pretraining"], suggest_beyond_topics=False)
    for reader in (learner, off, quiet):
        mark(session, reader, liked, disliked)
    session.commit()
    composer = DigestComposer(settings)
    digests, ids = build(session_factory, settings, composer)
    twin = digests["twin@example.org"].paper_ids
    matched = [m.paper.id for m in rank(EditionIndex.build(sorted(edition, key=lambda p: p.id)), ["pretraining"])]
    assert twin == matched[:10]  # today's ranking
    assert digests["off@example.org"].paper_ids == twin  # learning off: exactly today's digest
    learned = digests["learner@example.org"].paper_ids
    assert learned != twin and len(learned) == 10
    in_context = {p.id for p in edition if "in-context" in p.title.lower()}
    assert in_context & set(learned[:5])  # an in-context paper among the first five cards
    assert len(in_context & set(learned)) > len(in_context & set(twin))
    # Suggestions off: the same learned order of topic matches, nothing beyond them.
    assert set(digests["quiet@example.org"].paper_ids) <= set(matched)
    assert digests["quiet@example.org"].paper_ids != twin


def test_suggestions_beyond_topics_are_few_and_say_which_liked_paper_they_are_like(session, session_factory, settings):
    edition = add_sample_papers(session, EDITION)
    liked, disliked = older_papers(session)
    learner = due_subscriber(session, "learner@example.org", ["diffusion"])
    quiet = due_subscriber(session, "quiet@example.org", ["diffusion"], suggest_beyond_topics=False)
    due_subscriber(session, "twin@example.org", ["diffusion"])
    for reader in (learner, quiet):
        mark(session, reader, liked, disliked)
    session.commit()
    composer = DigestComposer(settings)
    digests, ids = build(session_factory, settings, composer)
    matched = {m.paper.id for m in rank(EditionIndex.build(sorted(edition, key=lambda p: p.id)), ["diffusion"])}
    jobs = {job.subscriber.email: job for job, _ in build_batch(session_factory, settings, ids, composer).built}
    shown = composer.match(session, [jobs["learner@example.org"]])[jobs["learner@example.org"].delivery_id]
    suggested = [m for m in shown if not m.topics]
    assert 1 <= len(suggested) <= 3
    assert {m.resembles for m in suggested} <= {t for t, _ in LIKED}
    assert all("in-context" in m.paper.title.lower() for m in suggested)
    assert not {m.paper.id for m in suggested} & matched
    assert {m.paper.id for m in suggested} <= set(digests["learner@example.org"].paper_ids)
    assert set(digests["quiet@example.org"].paper_ids) <= matched
    assert set(digests["twin@example.org"].paper_ids) <= matched


def test_a_reader_without_topics_gets_the_edition_by_upvotes(session, session_factory, settings):
    edition = add_sample_papers(session, EDITION)
    due_subscriber(session, "hot@example.org", [], max_papers=5)
    session.commit()
    composer = DigestComposer(settings)
    digests, ids = build(session_factory, settings, composer)
    expected = [p.id for p in sorted(edition, key=lambda p: (-p.upvotes, p.id))[:5]]
    assert digests["hot@example.org"].paper_ids == expected
    (job, _), = build_batch(session_factory, settings, ids, composer).built
    top = composer.match(session, [job])[job.delivery_id]
    assert top.total == len(edition)
    assert all(m.topics == () and m.resembles is None for m in top)


def test_a_trending_reader_with_marks_sees_liked_like_papers_first(session, session_factory, settings):
    edition = add_sample_papers(session, EDITION)
    liked, disliked = older_papers(session)
    hot = due_subscriber(session, "hot@example.org", [], max_papers=5)
    mark(session, hot, liked, disliked)
    session.commit()
    digests, _ = build(session_factory, settings, DigestComposer(settings))
    papers = digests["hot@example.org"].paper_ids
    by_upvotes = [p.id for p in sorted(edition, key=lambda p: (-p.upvotes, p.id))[:5]]
    assert papers != by_upvotes and len(papers) == 5
    assert any("in-context" in p.title.lower() for p in edition if p.id in papers)


def test_a_model_is_refitted_only_when_the_marks_changed(session, session_factory, settings):
    add_sample_papers(session, EDITION)
    liked, disliked = older_papers(session)
    learner = due_subscriber(session, "learner@example.org", ["pretraining"])
    due_subscriber(session, "twin@example.org", ["pretraining"])
    mark(session, learner, liked[:1], [])
    session.commit()
    composer = DigestComposer(settings)
    first, ids = build(session_factory, settings, composer)
    assert composer.learning.models.fits == 1  # the reader without marks costs no fit
    build_batch(session_factory, settings, ids, composer)
    assert composer.learning.models.fits == 1
    mark(session, learner, liked[1:], disliked)  # new marks bump the version
    session.commit()
    again = build_batch(session_factory, settings, ids, composer)
    assert composer.learning.models.fits == 2
    emails = {job.subscriber.email: composed.paper_ids for job, composed in again.built}
    assert emails["twin@example.org"] == first["twin@example.org"].paper_ids
