from datetime import date, datetime, timezone

from sqlalchemy import func, select

from digest.ingest import store_papers
from digest.models import Paper
from digest.sources.base import PaperRecord

DAY1 = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)
DAY2 = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)


def record(**fields) -> PaperRecord:
    values = {"id": "2611.00001", "title": "Pre-Training at Scale", "source": "hf"}
    values.update(fields)
    return PaperRecord(**values)


def test_a_new_paper_is_stored_with_the_edition_it_entered(session):
    counts = store_papers(session, [record(upvotes=3, authors=["Ana Ruiz"])], DAY1)
    paper = session.get(Paper, "2611.00001")
    assert (counts.new, counts.updated, counts.unchanged) == (1, 0, 0)
    assert paper.edition == date(2026, 11, 26)
    assert paper.upvotes == 3 and paper.authors == ["Ana Ruiz"] and paper.sources == ["hf"]


def test_the_same_fetch_twice_adds_nothing_and_changes_nothing(session):
    batch = [record(id=f"2611.0000{i}", title=f"Paper {i}") for i in range(1, 6)]
    store_papers(session, batch, DAY1)
    again = store_papers(session, batch, DAY2)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 5)
    assert session.scalar(select(func.count()).select_from(Paper)) == 5
    assert {p.edition for p in session.scalars(select(Paper))} == {date(2026, 11, 26)}  # editions never move


def test_changed_upvotes_count_as_updated(session):
    store_papers(session, [record(upvotes=3)], DAY1)
    counts = store_papers(session, [record(upvotes=9)], DAY2)
    assert (counts.new, counts.updated) == (0, 1)
    assert session.get(Paper, "2611.00001").upvotes == 9


def test_sources_merge_on_the_arxiv_id_into_one_row(session):
    hf = record(upvotes=12, github_repo="https://github.com/x/y", abstract="")
    arxiv = record(
        title="Pre-Training at Scale (arXiv spelling)",
        abstract="From arXiv.",
        categories=["cs.LG", "cs.CL"],
        authors=["Ana Ruiz", "Bo Li"],
        source="arxiv",
    )
    counts = store_papers(session, [hf, arxiv], DAY1)
    assert counts.new == 1
    paper = session.get(Paper, "2611.00001")
    assert paper.title == "Pre-Training at Scale"  # the first source's title is kept
    assert paper.abstract == "From arXiv."  # filled from the source that had it
    assert paper.upvotes == 12 and paper.github_repo == "https://github.com/x/y"
    assert paper.categories == ["cs.LG", "cs.CL"] and paper.sources == ["hf", "arxiv"]
    # The arXiv source reports no upvotes: it must not reset Hugging Face's figure.
    store_papers(session, [arxiv], DAY2)
    assert session.get(Paper, "2611.00001").upvotes == 12


def test_markup_and_unicode_are_stored_as_text(session):
    store_papers(session, [record(title="<script>alert(1)</script> naïve Zoë")], DAY1)
    assert session.get(Paper, "2611.00001").title == "<script>alert(1)</script> naïve Zoë"
