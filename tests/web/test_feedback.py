"""The "More like this" / "Less like this" links of the email, over HTTP: a GET shows the paper
and one button and records nothing; the POST records once, the other link switches, Undo deletes;
bad links, unsubscribed readers and papers gone change nothing."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select, text

from digest.config import load_settings
from digest.mail import feedback_url, settings_url
from digest.models import Feedback, Paper, Subscriber, SubscriberStatus
from digest.tokens import feedback_token, read_token, rotate_tokens
from tests.factories import make_paper, make_subscriber
from tests.web.conftest import csrf_token


def path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def reload(session, subscriber_id: int) -> Subscriber | None:
    session.expire_all()
    return session.get(Subscriber, subscriber_id)


def marks(session, subscriber_id: int | None = None) -> list[tuple[str, bool, str]]:
    session.expire_all()
    query = select(Feedback.paper_id, Feedback.liked, Feedback.source).order_by(Feedback.paper_id)
    if subscriber_id is not None:
        query = query.where(Feedback.subscriber_id == subscriber_id)
    return [tuple(row) for row in session.execute(query)]


@pytest.fixture
def reader(session):
    return make_subscriber(session, "ana@example.org", ["pretraining"])


@pytest.fixture
def paper(session):
    return make_paper(session, title="Scaling <b>Pre-Training</b> for Robots")


def press(client, url: str, suffix: str = ""):
    """Open the link as a person would, then press the page's button."""
    return client.post(url + suffix, data={"csrf_token": csrf_token(client, url)})


def test_opening_the_link_names_the_paper_offers_one_button_and_records_nothing(client, session, reader, paper,
                                                                                settings):
    version = reader.feedback_version
    page = client.get(path(feedback_url(reader, paper.id, "more", settings)))
    assert page.status_code == 200
    assert "Scaling &lt;b&gt;Pre-Training&lt;/b&gt; for Robots" in page.text  # untrusted: escaped
    assert f'href="https://arxiv.org/abs/{paper.id}"' in page.text
    assert "show you more papers like this one" in page.text
    assert page.text.count('<button type="submit"') == 1 and ">More like this</button>" in page.text
    assert marks(session) == [] and reload(session, reader.id).feedback_version == version
    less = client.get(path(feedback_url(reader, paper.id, "less", settings)))
    assert ">Less like this</button>" in less.text and "fewer papers like this one" in less.text


def test_head_and_options_change_nothing(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    assert client.head(url).status_code == 405  # as every page of the app: HEAD is not routed
    assert client.options(url).status_code == 405
    assert marks(session) == []


def test_pressing_the_button_records_the_mark_and_offers_undo(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    answer = press(client, url)
    assert answer.status_code == 200
    assert "We'll show you more papers like" in answer.text.replace("&#39;", "'")
    assert f'action="{url}/undo"' in answer.text and ">Undo</button>" in answer.text
    # A link to this reader's settings (its token carries the second it was made in: not the same string).
    settings_token = re.search(rf'href="{re.escape(settings.base_url)}/settings/([^"]+)"', answer.text).group(1)
    assert read_token(session, settings_token, "settings", settings).id == reader.id
    assert marks(session, reader.id) == [(paper.id, True, "email")]
    assert reload(session, reader.id).feedback_version == 1


def test_pressing_twice_is_one_mark_and_one_change(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "less", settings))
    assert press(client, url).status_code == 200
    assert press(client, url).status_code == 200
    assert "fewer papers like" in press(client, url).text
    assert marks(session, reader.id) == [(paper.id, False, "email")]
    assert reload(session, reader.id).feedback_version == 1  # a press that changes nothing refits nothing


def test_the_other_button_switches_the_mark(client, session, reader, paper, settings):
    press(client, path(feedback_url(reader, paper.id, "more", settings)))
    answer = press(client, path(feedback_url(reader, paper.id, "less", settings)))
    assert "We'll show you fewer papers like" in answer.text.replace("&#39;", "'")
    assert marks(session) == [(paper.id, False, "email")]
    assert reload(session, reader.id).feedback_version == 2


def test_undo_deletes_the_mark_and_undoing_twice_is_harmless(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    press(client, url)
    undone = press(client, url, "/undo")
    assert undone.status_code == 200 and "is removed" in undone.text
    assert ">More like this</button>" in undone.text  # changed their mind again: one press away
    assert marks(session) == []
    assert press(client, url, "/undo").status_code == 200
    assert marks(session) == [] and reload(session, reader.id).feedback_version == 2


def test_a_post_without_the_form_token_records_nothing(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    client.get(url)
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf_token": "x.y"}).status_code == 403
    assert marks(session) == []


def tampered(token: str) -> str:
    head, signature = token.rsplit(".", 1)
    middle = len(signature) // 2
    return f"{head}.{signature[:middle]}{'A' if signature[middle] != 'A' else 'B'}{signature[middle + 1:]}"


def test_tampered_foreign_and_other_readers_links_get_400_and_change_nothing(client, session, reader, paper, settings):
    other = make_subscriber(session, "bo@example.org", ["agents"])
    good = feedback_token(reader, paper.id, "more", settings)
    foreign = load_settings(database_url=settings.database_url, secret_key="another-server's-secret-key-0123456789")
    _, action, paper_part, signature = good.split(".")
    bad = {
        "tampered signature": tampered(good),
        "other key": feedback_token(reader, paper.id, "more", foreign),
        "other reader's id": f"{other.id}.{action}.{paper_part}.{signature}",
        "other action": f"{reader.id}.less.{paper_part}.{signature}",
        "other paper": f"{reader.id}.{action}.{feedback_token(reader, '2611.99999', 'more', settings).split('.')[2]}"
                       f".{signature}",
        "truncated": good[: len(good) // 2],
        "garbage": "not-a-token",
        "huge": "1.more." + "A" * 5000,
    }
    for name, token in bad.items():
        page = client.get(f"/feedback/{token}")
        assert page.status_code == 400, name
        assert "This link is not valid" in page.text, name
        for suffix in ("", "/undo"):
            assert client.post(f"/feedback/{token}{suffix}", data={"csrf_token": csrf_token(client)}).status_code == 400
    assert marks(session) == []
    assert reload(session, reader.id).feedback_version == 0 and reload(session, other.id).feedback_version == 0


def test_links_sent_before_the_links_were_renewed_are_refused(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    rotate_tokens(reader)
    session.flush()
    assert client.get(url).status_code == 400
    assert client.post(url, data={"csrf_token": csrf_token(client)}).status_code == 400
    assert marks(session) == []


def test_an_unsubscribed_reader_is_told_how_to_come_back_and_nothing_is_recorded(client, session, reader, paper,
                                                                                 settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    press(client, url)  # a mark from when they were subscribed
    reload(session, reader.id).status = SubscriberStatus.unsubscribed
    session.flush()
    page = client.get(url)
    assert page.status_code == 409 and "You are unsubscribed" in page.text and "subscribe on the home page" in page.text
    for other in (path(feedback_url(reader, paper.id, "less", settings)), url + "/undo"):
        answer = client.post(other, data={"csrf_token": csrf_token(client)})
        assert answer.status_code == 409, other
    assert marks(session) == [(paper.id, True, "email")]
    assert reload(session, reader.id).feedback_version == 1


def test_a_deleted_readers_links_are_invalid(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    settings_page = path(settings_url(reader, settings))
    client.post(settings_page + "/delete", data={"csrf_token": csrf_token(client, settings_page), "confirm_delete": "yes"})
    assert reload(session, reader.id) is None
    assert client.get(url).status_code == 400
    assert client.post(url, data={"csrf_token": csrf_token(client)}).status_code == 400
    assert marks(session) == []


def test_a_paper_no_longer_in_the_store_gets_404_and_nothing_is_recorded(client, session, reader, settings):
    url = path(feedback_url(reader, "2611.99999", "more", settings))
    page = client.get(url)
    assert page.status_code == 404 and "no longer" in page.text
    assert client.post(url, data={"csrf_token": csrf_token(client)}).status_code == 404
    assert marks(session) == []


def test_feedback_posts_are_rate_limited_per_client(app, client, session, reader, settings):
    from digest.web.ratelimit import RateLimiter  # a limiter with room for one test's presses

    papers = [make_paper(session) for _ in range(4)]
    app.state.settings = load_settings(**{**settings.model_dump(include={"database_url", "base_url", "secret_key",
                                                                          "broker_url"}), "feedback_rate_limit": 3})
    app.state.pages.settings = app.state.settings
    assert isinstance(app.state.limiter, RateLimiter)
    codes = [press(client, path(feedback_url(reader, p.id, "more", app.state.settings))).status_code for p in papers]
    assert codes == [200, 200, 200, 429]
    assert len(marks(session)) == 3


def test_feedback_links_are_kept_out_of_the_access_log():
    from digest.web.app import RedactTokens

    assert RedactTokens.PATTERN.sub(r"/\1/[token]", "GET /feedback/12.more.abc.def HTTP/1.1") == \
        "GET /feedback/[token] HTTP/1.1"


# ---------------------------------------------------------------- export and delete


def test_the_export_holds_the_readers_marks(client, session, reader, paper, settings):
    press(client, path(feedback_url(reader, paper.id, "less", settings)))
    data = json.loads(client.get(path(settings_url(reader, settings)) + "/export").text)
    [mark] = data["feedback"]
    assert (mark["paper_id"], mark["title"], mark["mark"], mark["source"]) == \
        (paper.id, "Scaling <b>Pre-Training</b> for Robots", "less", "email")
    assert mark["created_at"]
    assert data["learn_from_feedback"] is True and data["suggest_beyond_topics"] is True


def test_delete_erases_every_mark(client, session, reader, paper, settings):
    other = make_subscriber(session, "bo@example.org", ["agents"])
    press(client, path(feedback_url(reader, paper.id, "more", settings)))
    press(client, path(feedback_url(other, paper.id, "less", settings)))
    url = path(settings_url(reader, settings))
    client.post(url + "/delete", data={"csrf_token": csrf_token(client, url), "confirm_delete": "yes"})
    assert marks(session) == [(paper.id, False, "email")]  # only the other reader's remains
    assert session.get(Paper, paper.id) is not None


def test_the_database_cascades_a_readers_marks_with_their_row(session, reader, paper):
    """The foreign key does it too (SQLite: with foreign_keys on, as every connection sets)."""
    if session.get_bind().dialect.name == "sqlite":
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    session.add(Feedback(subscriber_id=reader.id, paper_id=paper.id, liked=True, source="email"))
    session.flush()
    session.execute(text("DELETE FROM subscribers WHERE id = :id"), {"id": reader.id})
    assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_the_page_says_what_is_already_marked_and_when_learning_is_off(client, session, reader, paper, settings):
    url = path(feedback_url(reader, paper.id, "more", settings))
    press(client, url)
    reload(session, reader.id).learn_from_feedback = False
    session.flush()
    page = client.get(path(feedback_url(reader, paper.id, "less", settings))).text
    assert "You marked this paper “More like this” on" in page
    assert "“Learn from my feedback” is off in your settings" in page
    assert marks(session) == [(paper.id, True, "email")]


def test_simultaneous_presses_of_both_links_leave_one_mark(committed_db, database_url, tmp_path):
    """A double click, a mail client retrying, a reader pressing the other link at once: one row,
    on PostgreSQL and on SQLite, and no request fails."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from digest.db import session_factory
    from digest.web import create_app
    from digest.web.ratelimit import RateLimiter
    from tests.conftest import REDIS_URL, TEST_SECRET_KEY
    from tests.web.live import served

    sessions = session_factory(committed_db)
    with sessions() as session, session.begin():
        reader = make_subscriber(session, "ana@example.org")
        paper = make_paper(session)
    limiter = RateLimiter(1000, redis_url=REDIS_URL, prefix=f"digest-test:{uuid.uuid4().hex}")
    made = {}

    def app_for(base_url):
        made["settings"] = load_settings(database_url=database_url, base_url=base_url, secret_key=TEST_SECRET_KEY,
                                         broker_url=REDIS_URL, outbox_dir=tmp_path / "outbox", sources="hf",
                                         feedback_rate_limit=1000)
        return create_app(made["settings"], sessions=sessions, limiter=limiter)

    with served(app_for) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        urls = [path(feedback_url(reader, paper.id, action, made["settings"])) for action in ("more", "less")]
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(urls[0]).text).group(1)
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda n: client.post(urls[n % 2], data={"csrf_token": token}).status_code,
                                  range(16)))
    assert codes == [200] * 16
    with sessions() as session:
        rows = session.execute(select(Feedback.subscriber_id, Feedback.paper_id)).all()
        assert rows == [(reader.id, paper.id)]
        assert 1 <= session.get(Subscriber, reader.id).feedback_version <= 16
