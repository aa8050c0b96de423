"""A reader's marks, as the library decides them: what a line of "Papers you like" names, one mark
per reader and paper, the version bumped on every change and only then, the edition of a paper
looked up by id."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from digest import subscriptions as subs
from digest.models import Feedback, SubscriberStatus
from digest.sources.base import PaperRecord
from tests.factories import make_paper, make_subscriber


@pytest.mark.parametrize("line,paper_id", [
    ("2602.01234", "2602.01234"),
    ("2602.01234v2", "2602.01234"),
    (" arXiv:2602.01234V3 ", "2602.01234"),
    ("0704.0001", "0704.0001"),
    ("hep-th/9901001", "hep-th/9901001"),
    ("hep-th/9901001v2", "hep-th/9901001"),
    ("math.CV/0101001V3", "math.CV/0101001"),
    ("HEP-TH/9901001", "hep-th/9901001"),
    ("https://arxiv.org/abs/2602.01234", "2602.01234"),
    ("http://arxiv.org/abs/2602.01234v2/", "2602.01234"),
    ("https://arxiv.org/pdf/2602.01234v2.pdf", "2602.01234"),
    ("https://arxiv.org/pdf/2602.01234", "2602.01234"),
    ("arxiv.org/abs/hep-th/9901001", "hep-th/9901001"),
    ("https://www.arxiv.org/abs/2602.01234?context=cs", "2602.01234"),
    ("https://export.arxiv.org/abs/2602.01234#abstract", "2602.01234"),
    ("https://huggingface.co/papers/2602.01234", "2602.01234"),
    ("https://hf.co/papers/2602.01234/", "2602.01234"),
    ("https://example.org/abs/2602.01234", None),
    ("https://arxiv.org.evil.example/abs/2602.01234", None),
    ("https://huggingface.co/2602.01234", None),
    ("2602.01234 2602.05678", None),
    ("pretraining", None),
    ("", None),
])
def test_what_a_line_names(line, paper_id):
    assert subs.paper_id_of(line) == paper_id


def test_each_line_is_checked_on_its_own_and_named_by_its_number():
    lines = subs.read_liked_lines("2602.01234\n\n  nonsense  \r\nhttps://arxiv.org/abs/2602.05678\n" + "x" * 400)
    assert lines.ids == [(1, "2602.01234", "2602.01234"), (4, "https://arxiv.org/abs/2602.05678", "2602.05678")]
    assert [(e.number, e.text) for e in lines.errors] == [(3, "nonsense"), (5, "x" * 77 + "...")]
    assert "not an arXiv id" in lines.errors[0].message and "longer than 300" in lines.errors[1].message


def test_at_most_fifty_lines_are_read():
    lines = subs.read_liked_lines("\n".join(f"2602.{n:05d}" for n in range(55)))
    assert len(lines.ids) == 50 and [e.number for e in lines.errors] == [51, 52, 53, 54, 55]


def test_a_looked_up_papers_edition_is_its_publication_day_in_utc():
    record = PaperRecord(id="2402.01234", title="t",
                         published_at=datetime(2024, 2, 2, 23, 30, tzinfo=timezone.utc))
    assert subs.lookup_edition(record) == date(2024, 2, 2)
    assert subs.lookup_edition(PaperRecord(id="2402.01234", title="t")) == date(2024, 2, 1)
    assert subs.lookup_edition(PaperRecord(id="hep-th/9901001", title="t")) == date(1999, 1, 1)
    assert subs.lookup_edition(PaperRecord(id="0704.0001", title="t")) == date(2007, 4, 1)


def rows(session):
    session.expire_all()
    return [tuple(r) for r in session.execute(select(Feedback.paper_id, Feedback.liked, Feedback.source))]


def test_record_switch_undo_and_the_version(session):
    reader = make_subscriber(session)
    paper = make_paper(session)
    assert subs.record(session, reader, paper.id, True) is True
    assert subs.record(session, reader, paper.id, True) is False
    assert reader.feedback_version == 1 and rows(session) == [(paper.id, True, "email")]
    assert subs.record(session, reader, paper.id, False) is True
    assert reader.feedback_version == 2 and rows(session) == [(paper.id, False, "email")]
    assert subs.undo(session, reader, paper.id) is True
    assert subs.undo(session, reader, paper.id) is False
    assert reader.feedback_version == 3 and rows(session) == []


def test_a_like_from_the_settings_keeps_a_like_from_the_email_as_it_was(session):
    reader = make_subscriber(session)
    paper = make_paper(session)
    subs.record(session, reader, paper.id, True, source="email")
    outcome = subs.like_papers(session, reader, subs.read_liked_lines(paper.id))
    assert outcome.saved == [paper.id] and outcome.errors == []
    assert rows(session) == [(paper.id, True, "email")] and reader.feedback_version == 1


def test_marks_of_one_reader_are_theirs_alone(session):
    ana, bo = make_subscriber(session), make_subscriber(session)
    paper = make_paper(session)
    subs.record(session, ana, paper.id, True)
    subs.record(session, bo, paper.id, False)
    assert [(m.paper_id, m.label) for m in subs.marks(session, ana)] == [(paper.id, "More")]
    assert [(m.paper_id, m.label) for m in subs.marks(session, bo)] == [(paper.id, "Less")]
    subs.remove(session, ana, paper.id)
    assert subs.marks(session, ana) == [] and len(subs.marks(session, bo)) == 1


def test_nothing_is_recorded_for_an_unsubscribed_reader_or_a_paper_not_stored(session):
    reader = make_subscriber(session, status=SubscriberStatus.unsubscribed)
    paper = make_paper(session)
    with pytest.raises(subs.NotSubscribed):
        subs.record(session, reader, paper.id, True)
    with pytest.raises(subs.NotSubscribed):
        subs.like_papers(session, reader, subs.read_liked_lines(paper.id))
    active = make_subscriber(session)
    with pytest.raises(subs.PaperGone):
        subs.record(session, active, "2611.99999", True)
    assert rows(session) == [] and reader.feedback_version == 0 and active.feedback_version == 0
