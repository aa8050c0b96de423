"""The settings page's part of feedback, over HTTP: the papers a reader marked (each removable),
the "Papers you like" box (ids and links, a bad line named and the others saved, papers the store
lacks looked up on a stand-in arXiv API), and the two choices."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.config import load_settings
from digest.mail import feedback_url, settings_url
from digest.models import Feedback, Paper, Subscriber, SubscriberStatus
from digest.web import create_app
from tests.factories import arxiv_feed, make_paper, make_subscriber
from tests.stand_ins import LocalServer
from tests.web.conftest import csrf_token


class ArxivById(LocalServer):
    """/api/query answering `id_list` as export.arxiv.org does: an entry for each id it knows."""

    def __init__(self, records: list[dict]) -> None:
        super().__init__()
        self.records = {r["id"]: r for r in records}
        self.status = 200

    def answer(self, handler, path: str, query: dict) -> None:
        if self.status != 200:
            self.send(handler, self.status, b"Rate exceeded.", "text/plain")
            return
        wanted = [i for i in query.get("id_list", "").split(",") if i]
        found = [self.records[i] for i in wanted if i in self.records]
        self.send(handler, 200, arxiv_feed(found), "application/atom+xml; charset=utf-8")


OLD_PAPER = {"id": "2402.01234", "title": "A Paper from Two Years Ago", "abstract": "Old but good.",
             "authors": ["Ana Ruiz"], "categories": ["cs.CL"], "published_at": "2024-02-02T17:00:00Z"}
OLD_STYLE = {"id": "hep-th/9901001", "title": "Strings, the Old Way", "authors": ["A. Physicist"],
             "categories": ["hep-th"], "published_at": "1999-01-04T10:00:00Z"}


@pytest.fixture
def arxiv_api():
    with ArxivById([OLD_PAPER, OLD_STYLE]) as server:
        yield server


@pytest.fixture
def client(settings, session_factory, outbox, limiter, arxiv_api):
    # One try per request: a test of arXiv failing must not wait for back-offs.
    local = load_settings(**settings.model_dump(include={"database_url", "broker_url", "base_url", "secret_key",
                                                         "outbox_dir", "sources", "hf_api_url"}),
                          arxiv_api_url=arxiv_api.url, http_attempts=1)
    app = create_app(local, sessions=session_factory, limiter=limiter, transport=outbox)
    with TestClient(app, base_url=local.base_url, follow_redirects=False) as client:
        client.local_settings = local
        yield client


@pytest.fixture
def reader(session):
    return make_subscriber(session, "ana@example.org", ["pretraining"])


def path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def reload(session, subscriber_id: int) -> Subscriber:
    session.expire_all()
    return session.get(Subscriber, subscriber_id)


def marks(session, subscriber_id: int) -> dict[str, tuple[bool, str]]:
    session.expire_all()
    rows = session.execute(select(Feedback.paper_id, Feedback.liked, Feedback.source)
                           .where(Feedback.subscriber_id == subscriber_id))
    return {paper_id: (liked, source) for paper_id, liked, source in rows}


def form(subscriber, **changes) -> dict:
    values = {"topics": "\n".join(t.query for t in subscriber.topics), "frequency": "daily", "weekday": "0",
              "hour": "7", "timezone": "UTC", "max_papers": "10", "learn_from_feedback": "on",
              "suggest_beyond_topics": "on"}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def save(client, subscriber, **changes):
    url = path(settings_url(subscriber, client.local_settings))
    return client.post(url, data={"csrf_token": csrf_token(client, url), **form(subscriber, **changes)})


def press(client, url: str):
    return client.post(url, data={"csrf_token": csrf_token(client, url)})


def test_the_page_lists_the_marks_each_removable(client, session, reader):
    liked = make_paper(session, title="Efficient <i>Pre-Training</i>")
    disliked = make_paper(session, title="Graph Networks for Chemistry")
    press(client, path(feedback_url(reader, liked.id, "more", client.local_settings)))
    press(client, path(feedback_url(reader, disliked.id, "less", client.local_settings)))
    url = path(settings_url(reader, client.local_settings))
    page = client.get(url)
    assert page.status_code == 200
    marks_section = page.text.split('id="marks"')[1].split("</section>")[0]
    assert "Efficient &lt;i&gt;Pre-Training&lt;/i&gt;" in marks_section
    assert ">More</span>" in marks_section and ">Less</span>" in marks_section
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in marks_section
    assert marks_section.count(">Remove</button>") == 2

    answer = client.post(url + "/feedback/remove", data={"csrf_token": csrf_token(client, url), "paper_id": liked.id})
    assert answer.status_code == 303 and answer.headers["location"] == f"{url}?removed=1"
    assert marks(session, reader.id) == {disliked.id: (False, "email")}
    assert reload(session, reader.id).feedback_version == 3
    after = client.get(answer.headers["location"]).text
    assert "That mark is removed" in after and "Efficient &lt;i&gt;" not in after.split('id="marks"')[1]
    # Removing it again (a second tab) is harmless.
    again = client.post(url + "/feedback/remove", data={"csrf_token": csrf_token(client, url), "paper_id": liked.id})
    assert again.status_code == 303 and reload(session, reader.id).feedback_version == 3


def test_removing_needs_the_form_token_and_a_good_link(client, session, reader):
    paper = make_paper(session)
    press(client, path(feedback_url(reader, paper.id, "more", client.local_settings)))
    url = path(settings_url(reader, client.local_settings))
    assert client.post(url + "/feedback/remove", data={"paper_id": paper.id}).status_code == 403
    assert client.post("/settings/not-a-token/feedback/remove",
                       data={"csrf_token": csrf_token(client), "paper_id": paper.id}).status_code == 400
    assert marks(session, reader.id) == {paper.id: (True, "email")}


def test_papers_you_like_mixed_good_and_bad_lines(client, session, reader, arxiv_api):
    stored = make_paper(session, title="Already in the Store")
    emailed = make_paper(session, title="Marked Less by Email")
    press(client, path(feedback_url(reader, emailed.id, "less", client.local_settings)))
    liked = "\n".join([
        stored.id,                                            # 1: an id of the store
        "not a paper",                                        # 2: bad
        "https://arxiv.org/abs/2402.01234v2",                 # 3: looked up on arXiv
        "",                                                   # (blank: skipped, still counted as a line)
        f"https://huggingface.co/papers/{emailed.id}",        # 5: switches the emailed mark
        "hep-th/9901001",                                     # 6: old style, looked up
        "2603.99999",                                         # 7: arXiv has no such paper
        "https://example.org/abs/2402.01234",                 # 8: not an arXiv link
    ])
    answer = save(client, reader, liked=liked, max_papers="12")
    assert answer.status_code == 422
    assert "Your settings are saved, with 4 papers you like" in answer.text
    errors = answer.text.split('id="liked-errors"')[1].split("</div>")[0]
    assert "Line 2 (<code>not a paper</code>): not an arXiv id" in errors
    assert "Line 7 (<code>2603.99999</code>): arXiv has no paper with this id" in errors
    assert "Line 8 (" in errors and "Line 3 (" not in errors and "Line 1 (" not in errors
    # The lines not saved stay in the box, to fix; the others are saved.
    box = answer.text.split('id="liked"')[1].split("</textarea>")[0]
    assert "not a paper" in box and "2603.99999" in box and stored.id not in box
    assert marks(session, reader.id) == {
        stored.id: (True, "settings"), "2402.01234": (True, "settings"), emailed.id: (True, "settings"),
        "hep-th/9901001": (True, "settings"),
    }
    assert reload(session, reader.id).max_papers == 12  # the rest of the form is saved too
    # One request to arXiv, for the two papers the store lacked (and the one it does not know).
    [request] = [r for r in arxiv_api.requests if r["path"] == "/api/query"]
    assert request["id_list"].split(",") == ["2402.01234", "hep-th/9901001", "2603.99999"]
    # The paper looked up is stored with its publication day as edition: not today's news.
    fetched = session.get(Paper, "2402.01234")
    assert fetched.title == "A Paper from Two Years Ago" and fetched.edition == date(2024, 2, 2)
    assert session.get(Paper, "hep-th/9901001").edition == date(1999, 1, 4)
    page = client.get(path(settings_url(reader, client.local_settings))).text
    assert "A Paper from Two Years Ago" in page.split('id="marks"')[1]


def test_all_good_lines_save_and_the_box_is_empty_again(client, session, reader):
    paper = make_paper(session)
    answer = save(client, reader, liked=f"  arXiv:{paper.id}v3  \r\nhttps://arxiv.org/pdf/{paper.id}v3.pdf\n")
    assert answer.status_code == 303
    assert marks(session, reader.id) == {paper.id: (True, "settings")}
    assert reload(session, reader.id).feedback_version == 1
    page = client.get(answer.headers["location"]).text
    assert "Your settings are saved" in page
    assert re.search(r'id="liked"[^>]*></textarea>', page)
    # Saving the same again changes no mark: no refit.
    save(client, reader, liked=paper.id)
    assert reload(session, reader.id).feedback_version == 1


def test_more_than_fifty_lines_keeps_the_first_fifty(client, session, reader):
    papers = [make_paper(session) for _ in range(52)]
    answer = save(client, reader, liked="\n".join(p.id for p in papers))
    assert answer.status_code == 422
    assert "Line 51 (" in answer.text and "Line 52 (" in answer.text and "at most 50 papers at a time" in answer.text
    assert set(marks(session, reader.id)) == {p.id for p in papers[:50]}


def test_arxiv_unreachable_keeps_the_lines_to_send_again(client, session, reader, arxiv_api):
    arxiv_api.status = 503
    stored = make_paper(session)
    answer = save(client, reader, liked=f"{stored.id}\n2402.01234")
    assert answer.status_code == 422
    assert "Line 2 (<code>2402.01234</code>): arXiv could not be reached" in answer.text
    assert marks(session, reader.id) == {stored.id: (True, "settings")}
    assert session.get(Paper, "2402.01234") is None


def test_a_bad_topic_saves_nothing_not_even_the_papers_you_like(client, session, reader):
    paper = make_paper(session)
    answer = save(client, reader, topics='"unclosed', liked=paper.id, learn_from_feedback=None)
    assert answer.status_code == 422 and "Nothing was saved" in answer.text
    assert marks(session, reader.id) == {} and reload(session, reader.id).learn_from_feedback is True
    assert paper.id in answer.text.split('id="liked"')[1].split("</textarea>")[0]  # what was typed stays


def test_a_form_refused_for_a_bad_topic_asks_arxiv_nothing(client, session, reader, arxiv_api):
    answer = save(client, reader, topics='"unclosed', liked="2402.01234")
    assert answer.status_code == 422 and "Nothing was saved" in answer.text
    # The page is refused whatever arXiv says: asking it would only cost the reader a wait.
    assert [r for r in arxiv_api.requests if r["path"] == "/api/query"] == []
    assert "2402.01234" in answer.text.split('id="liked"')[1].split("</textarea>")[0]
    assert session.get(Paper, "2402.01234") is None


def test_the_two_choices_are_on_by_default_and_saved(client, session, reader):
    url = path(settings_url(reader, client.local_settings))
    page = client.get(url).text
    assert re.search(r'name="learn_from_feedback" checked', page) and re.search(r'name="suggest_beyond_topics" checked', page)
    assert "Learn from my feedback" in page and "Suggestions beyond my topics" in page
    assert save(client, reader, learn_from_feedback=None).status_code == 303
    row = reload(session, reader.id)
    assert (row.learn_from_feedback, row.suggest_beyond_topics) == (False, True)
    page = client.get(url).text
    assert not re.search(r'name="learn_from_feedback" checked', page)
    assert save(client, reader, suggest_beyond_topics=None).status_code == 303
    row = reload(session, reader.id)
    assert (row.learn_from_feedback, row.suggest_beyond_topics) == (True, False)


def test_the_topics_box_is_not_required_by_the_page(client, reader):
    page = client.get(path(settings_url(reader, client.local_settings))).text
    assert not re.search(r'<textarea id="topics"[^>]*required', page)


def test_an_unsubscribed_reader_adds_no_papers_but_may_remove_marks(client, session, reader):
    paper, other = make_paper(session), make_paper(session)
    press(client, path(feedback_url(reader, other.id, "more", client.local_settings)))
    reload(session, reader.id).status = SubscriberStatus.unsubscribed
    session.flush()
    answer = save(client, reader, liked=paper.id)
    assert answer.status_code == 422 and "you are unsubscribed" in answer.text
    assert marks(session, reader.id) == {other.id: (True, "email")}
    url = path(settings_url(reader, client.local_settings))
    client.post(url + "/feedback/remove", data={"csrf_token": csrf_token(client, url), "paper_id": other.id})
    assert marks(session, reader.id) == {}


class WritesWhileAnswering(ArxivById):
    """Before answering, checks that another connection can write: the app holds no write lock
    (SQLite) and no open transaction (PostgreSQL) while it waits on arXiv."""

    def __init__(self, records, engine) -> None:
        super().__init__(records)
        self.engine = engine
        self.seen: list[bool] = []

    def answer(self, handler, path, query):
        if self.engine.dialect.name == "sqlite":
            import sqlite3

            probe = sqlite3.connect(self.engine.url.database, timeout=0.2)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
                self.seen.append(True)
            except sqlite3.OperationalError:
                self.seen.append(False)
            finally:
                probe.close()
        else:
            from sqlalchemy import text as sql

            with self.engine.connect() as probe:
                open_units = probe.execute(sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'")).scalar()
            self.seen.append(open_units == 0)
        super().answer(handler, path, query)


def test_arxiv_is_asked_with_no_database_write_open(committed_db, settings, outbox, limiter):
    from digest.db import session_factory

    sessions = session_factory(committed_db)
    with sessions() as session, session.begin():
        reader = make_subscriber(session, "ana@example.org", ["pretraining"])
    with WritesWhileAnswering([OLD_PAPER], committed_db) as arxiv:
        local = load_settings(**settings.model_dump(include={"database_url", "broker_url", "base_url", "secret_key",
                                                             "outbox_dir", "sources"}),
                              arxiv_api_url=arxiv.url, http_attempts=1)
        app = create_app(local, sessions=sessions, limiter=limiter, transport=outbox)
        with TestClient(app, base_url=local.base_url, follow_redirects=False) as client:
            client.local_settings = local
            assert save(client, reader, liked="2402.01234").status_code == 303
    assert arxiv.seen == [True]
    with sessions() as session:
        assert session.scalars(select(Feedback.paper_id)).all() == ["2402.01234"]
