"""The admin console over HTTP: off without credentials, refused without a valid session, every
change a CSRF-checked POST written to the audit log; a real SMTP server's bounce shows up in the
suppressions and can be removed; a delete leaves nothing of the address in any table."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from digest.delivery import dispatch, send_batch
from digest.models import AuditEntry, Base, Delivery, DeliveryStatus, FetchRun, Subscriber, SubscriberStatus, Suppression
from digest.web import create_app
from tests.delivery.helpers import EDITION, NOW, add_sample_papers, due_subscriber
from tests.factories import make_paper, make_subscriber
from tests.smtp_server import RcptRule, SmtpTestServer
from tests.web.conftest import sent_messages

USER, PASSWORD = "operator", "a long admin password"


@pytest.fixture
def admin_settings(settings):
    return settings.model_copy(update={"admin_user": USER, "admin_password": PASSWORD, "admin_login_rate_limit": 5})


@pytest.fixture
def admin(admin_settings, session_factory, outbox, limiter):
    app = create_app(admin_settings, sessions=session_factory, limiter=limiter, transport=outbox)
    with TestClient(app, base_url=admin_settings.base_url, follow_redirects=False) as client:
        yield client


def form_token(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(client: TestClient, password: str = PASSWORD):
    return client.post("/admin/login", data={"user": USER, "password": password,
                                             "csrf_token": form_token(client, "/admin/login")})


@pytest.fixture
def signed_in(admin):
    assert sign_in(admin).status_code == 303
    return admin


def post(client: TestClient, path: str, page: str = "/admin", **fields):
    return client.post(path, data={"csrf_token": form_token(client, page), **fields})


def follow(client: TestClient, response) -> str:
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    return page.text


def edition_cells(page: str, edition: str) -> list[str]:
    """The overview's row for an edition: papers, sent, pending, failed, bounced, skipped, bounce rate."""
    row = re.search(rf"<tr><td>{edition}</td>(.*?)</tr>", page, re.S).group(1)
    return re.findall(r"<td>([^<]*)</td>", row)


PAGES = ["/admin", "/admin/subscribers", "/admin/subscribers/1", "/admin/deliveries", "/admin/suppressions", "/admin/audit"]


def test_the_console_does_not_exist_without_credentials(client):
    for path in PAGES + ["/admin/login"]:
        assert client.get(path).status_code == 404, path
    assert client.post("/admin/login", data={"user": "", "password": ""}).status_code == 404


def test_without_a_session_every_page_and_action_leads_to_the_sign_in_form(admin, session):
    subscriber = make_subscriber(session, "ana@example.org")
    for path in PAGES:
        answer = admin.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/login", path
    token = form_token(admin, "/admin/login")
    answer = admin.post(f"/admin/subscribers/{subscriber.id}/suppress", data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    assert session.get(Suppression, "ana@example.org") is None


def test_a_wrong_password_or_user_signs_nobody_in(admin):
    answer = sign_in(admin, "wrong password")
    assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    assert "digest_admin" not in answer.cookies
    other_user = admin.post("/admin/login", data={"user": "root", "password": PASSWORD,
                                                  "csrf_token": form_token(admin, "/admin/login")})
    assert other_user.status_code == 401
    assert admin.get("/admin").status_code == 303


def test_a_tampered_foreign_or_expired_cookie_is_refused(admin, admin_settings, monkeypatch):
    answer = sign_in(admin)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin"
    cookie = answer.cookies["digest_admin"]
    set_cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "max-age=28800" in set_cookie
    assert admin.get("/admin").status_code == 200

    payload, _, signature = cookie.rpartition(".")
    # The first character, not the last: base64's last character also carries padding bits, and
    # a change there may decode to the very same signature.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    foreign = create_app(admin_settings.model_copy(update={"secret_key": "another key entirely, long enough to be allowed"}), sessions=lambda: None)
    from digest.operations import session_cookie

    for bad in (f"{payload}.{flipped}", cookie[:-3], "x" + cookie, session_cookie(foreign.state.settings)):
        admin.cookies.set("digest_admin", bad, domain="digest.test", path="/admin")
        assert admin.get("/admin").status_code == 303, bad

    admin.cookies.set("digest_admin", cookie, domain="digest.test", path="/admin")
    later = datetime.now(timezone.utc).timestamp() + 8 * 3600 + 60
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert admin.get("/admin").status_code == 303  # expired after DIGEST_ADMIN_SESSION_HOURS


def test_a_changed_password_signs_everyone_out(admin, admin_settings, session_factory, limiter, outbox):
    cookie = sign_in(admin).cookies["digest_admin"]
    changed = create_app(admin_settings.model_copy(update={"admin_password": "a new password"}),
                         sessions=session_factory, limiter=limiter, transport=outbox)
    with TestClient(changed, base_url=admin_settings.base_url, follow_redirects=False) as other:
        other.cookies.set("digest_admin", cookie, domain="digest.test", path="/admin")
        assert other.get("/admin").status_code == 303


def test_sign_in_is_rate_limited(admin):
    for _ in range(5):
        assert sign_in(admin, "guess").status_code == 401
    blocked = sign_in(admin)  # even the right password, once the client used up its attempts
    assert blocked.status_code == 429 and "Too many sign-in attempts" in blocked.text
    assert admin.get("/admin").status_code == 303


def test_every_change_needs_the_csrf_token(signed_in, session):
    subscriber = make_subscriber(session, "ana@example.org")
    answer = signed_in.post(f"/admin/subscribers/{subscriber.id}/suppress", data={})
    assert answer.status_code == 403
    forged = signed_in.post(f"/admin/subscribers/{subscriber.id}/suppress", data={"csrf_token": "forged.value"})
    assert forged.status_code == 403
    assert session.get(Suppression, "ana@example.org") is None


def test_no_get_changes_anything(signed_in):
    for path in ("/admin/subscribers/1/suppress", "/admin/subscribers/1/delete", "/admin/deliveries/1/retry",
                 "/admin/suppressions/remove", "/admin/logout"):
        assert signed_in.get(path).status_code in (404, 405), path


def test_the_overview_counts_editions_fetches_and_subscribers(signed_in, session):
    now = datetime.now(timezone.utc)
    make_paper(session, edition=date(2026, 11, 25))
    make_paper(session, edition=date(2026, 11, 26))
    make_paper(session, edition=date(2026, 11, 26))
    readers = [make_subscriber(session, f"r{i}@example.org", created_at=now) for i in range(5)]
    for reader, status in zip(readers, ["sent", "sent", "bounced", "failed", "pending"]):
        session.add(Delivery(subscriber_id=reader.id, edition=date(2026, 11, 26), status=DeliveryStatus(status),
                             created_at=now - timedelta(hours=2)))
    session.add(FetchRun(source="hf", started_at=now - timedelta(minutes=30), finished_at=now, new=3, updated=1,
                         unchanged=0, skipped=2))
    session.add(FetchRun(source="arxiv:cs.LG", started_at=now - timedelta(minutes=30), finished_at=now, new=0,
                         updated=0, unchanged=0, skipped=0, error="arXiv answered 503 Service Unavailable"))
    session.flush()
    page = signed_in.get("/admin").text
    assert edition_cells(page, "2026-11-26") == ["2", "2", "1", "1", "1", "0", "25.0 %"]  # papers, sent, pending, failed, bounced, skipped, rate
    assert "1 digest due more than 30 minutes ago is not sent yet" in page
    assert re.search(r"<strong>hf</strong>: .*3 new, 1 updated, 2 skipped", page, re.S)
    assert re.search(r"<strong>arxiv:cs.LG</strong>: .*failed.*arXiv answered 503", page, re.S)
    assert "active: 5" in page
    assert re.search(rf"<td>{now.date().isoformat()}</td><td>5</td><td>0</td>", page)


def test_search_by_address_or_topic_and_the_subscriber_page(signed_in, session):
    ana = make_subscriber(session, "ana@example.org", ["diffusion -video", "<script>alert(1)</script>"],
                          timezone="Europe/Berlin", delivery_hour=6)
    make_subscriber(session, "bo@example.org", ["speech OR audio"])
    session.add(Delivery(subscriber_id=ana.id, edition=EDITION, status=DeliveryStatus.failed, attempts=3,
                         last_error="552 5.3.4 Message too big for system"))
    session.flush()
    by_address = signed_in.get("/admin/subscribers", params={"q": "ana@"}).text
    assert "ana@example.org" in by_address and "bo@example.org" not in by_address
    by_topic = signed_in.get("/admin/subscribers", params={"q": "SPEECH"}).text
    assert "bo@example.org" in by_topic and "ana@example.org" not in by_topic
    assert "No subscriber matches" in signed_in.get("/admin/subscribers", params={"q": "100%_"}).text

    page = signed_in.get(f"/admin/subscribers/{ana.id}")
    assert "06:00 Europe/Berlin" in page.text and "diffusion -video" in page.text
    assert "552 5.3.4 Message too big for system" in page.text
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_actions_change_one_thing_each_and_are_audited(signed_in, session, outbox):
    pending = make_subscriber(session, "pending@example.org", status=SubscriberStatus.pending)
    ana = make_subscriber(session, "ana@example.org")
    failed = Delivery(subscriber_id=ana.id, edition=EDITION, status=DeliveryStatus.failed, attempts=3,
                      last_error="451 4.7.1 try later")
    session.add(failed)
    session.flush()
    failed_id = failed.id

    page = follow(signed_in, post(signed_in, f"/admin/subscribers/{pending.id}/resend-confirmation"))
    assert "Confirmation sent." in page
    assert [m["To"] for m in sent_messages(outbox)] == ["pending@example.org"]
    refused = follow(signed_in, post(signed_in, f"/admin/subscribers/{ana.id}/resend-confirmation"))
    assert "Nothing changed: only a pending subscriber is sent a confirmation." in refused

    assert "Suppressed" in follow(signed_in, post(signed_in, f"/admin/subscribers/{ana.id}/suppress"))
    assert session.get(Suppression, "ana@example.org").reason == f"suppressed in the admin console by {USER}"
    page = follow(signed_in, post(signed_in, "/admin/suppressions/remove", email="ana@example.org",
                                  next=f"/admin/subscribers/{ana.id}"))
    assert "Suppression removed" in page and "ana@example.org" in page  # back on her page
    assert session.get(Suppression, "ana@example.org") is None

    assert "Queued" in follow(signed_in, post(signed_in, f"/admin/deliveries/{failed_id}/retry"))
    session.expire_all()
    retried = session.get(Delivery, failed_id)
    assert retried.status == DeliveryStatus.pending and retried.next_attempt_at is not None

    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        (USER, "sign in", ""),
        (USER, "resend confirmation", f"subscriber:{pending.id}"),
        (USER, "suppress", f"subscriber:{ana.id}"),
        (USER, "remove suppression", f"subscriber:{ana.id}"),
        (USER, "retry delivery", f"delivery:{failed_id}"),
    ]
    assert "retry delivery" in signed_in.get("/admin/audit").text


def test_a_notice_cannot_be_forged(signed_in):
    page = signed_in.get("/admin", params={"notice": "Call +1 555 0100 to verify your account"}).text
    assert "Call +1 555" not in page


def test_a_bounce_from_the_smtp_server_is_listed_in_suppressions_and_can_be_removed(
    signed_in, session, session_factory, settings
):
    with SmtpTestServer() as server:
        server.faults.rcpt.append(RcptRule("gone@example.org", "550 5.1.1 <gone@example.org>: user unknown"))
        smtp = settings.model_copy(update={"smtp_url": server.url, "sender": "Papers <digest@papers.test>"})
        add_sample_papers(session, EDITION)
        due_subscriber(session, "gone@example.org", ["pretraining"])
        due_subscriber(session, "ana@example.org", ["pretraining"])
        session.commit()
        ids: list[int] = []
        dispatch(session_factory, smtp, ids.extend, now=NOW)
        report = send_batch(session_factory, smtp, ids, now=NOW)
    assert report.bounced == 1 and report.sent == 1

    page = signed_in.get("/admin/suppressions").text
    row = re.search(r"<tr><td><a [^>]*>gone@example.org</a></td><td>([^<]*)</td>", page)
    assert row and "550 5.1.1" in row.group(1)
    assert "ana@example.org" not in page
    # papers, sent, pending, failed, bounced, skipped, bounce rate
    assert edition_cells(signed_in.get("/admin").text, "2026-11-26") == ["98", "1", "0", "0", "1", "0", "50.0 %"]

    page = follow(signed_in, post(signed_in, "/admin/suppressions/remove", page="/admin/suppressions",
                                  email="gone@example.org"))
    assert "Suppression removed" in page and "No suppressed address" in page
    session.expire_all()
    assert session.get(Suppression, "gone@example.org") is None


def every_stored_text(session) -> str:
    """Every row of every table, as text: what a search of the whole store would see."""
    session.expire_all()
    rows = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(text(f"SELECT * FROM {table.name}")):
            rows.append(" ".join(str(value) for value in row))
    return "\n".join(rows).lower()


def test_an_admin_delete_leaves_nothing_of_the_address(signed_in, session):
    gone = make_subscriber(session, "Gone.Reader@example.org".lower(), ["pretraining", "diffusion"])
    session.add(Delivery(subscriber_id=gone.id, edition=EDITION, status=DeliveryStatus.bounced,
                         message_id=f"<digest-2026-11-26-{gone.id}@papers.test>",
                         last_error="550 5.1.1 <gone.reader@example.org>: user unknown", paper_ids=["2611.00001"]))
    session.add(Suppression(email="gone.reader@example.org", reason="bounced: 550 5.1.1 <gone.reader@example.org>"))
    session.flush()
    post(signed_in, "/admin/suppressions/remove", page="/admin/suppressions", email="gone.reader@example.org")
    post(signed_in, f"/admin/subscribers/{gone.id}/suppress", page=f"/admin/subscribers/{gone.id}")
    assert "gone.reader@example.org" in every_stored_text(session)

    kept = post(signed_in, f"/admin/subscribers/{gone.id}/delete", page=f"/admin/subscribers/{gone.id}")
    assert "tick the box" in follow(signed_in, kept)
    assert session.get(Subscriber, gone.id) is not None

    page = follow(signed_in, post(signed_in, f"/admin/subscribers/{gone.id}/delete",
                                  page=f"/admin/subscribers/{gone.id}", confirm_delete="yes"))
    assert "Deleted" in page
    stored = every_stored_text(session)
    assert "gone.reader" not in stored and "gone%2ereader" not in stored
    assert session.scalar(select(Delivery.status).where(Delivery.edition == EDITION)) == DeliveryStatus.bounced
    assert signed_in.get(f"/admin/subscribers/{gone.id}").status_code == 404
    actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions[-1] == "delete subscriber"
