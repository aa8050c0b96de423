"""Routes: parse the request, call one function of the library, render a page.

No GET changes anything: confirm and unsubscribe links open a page with a button, the POST acts.
A route with a `{token}` gets it checked by its `link_to(purpose)` dependency (digest/web/deps.py).
"""

from __future__ import annotations

import json
from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from digest import counters, read
from digest import subscriptions as subs
from digest.delivery import edition_page as full_edition_page
from digest.mail import settings_url
from digest.models import SubscriberStatus
from digest.tokens import make_token
from digest.web.capacity import Busy
from digest.web.csrf import COOKIE, FIELD
from digest.web.deps import FeedbackLink, Link, feedback_link, link_to, pages_of, settings_of, unit_of_work

router = APIRouter()

# The full-edition page is the digest email's own HTML, whose styles are inline (as email needs):
# allow inline styles there, and still no script at all.
EMAIL_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _form_errors(exc: subs.InvalidInput) -> dict:
    return {"errors": {k: v for k, v in exc.errors.items() if k not in {t for t, _ in exc.topic_errors}},
            "topic_errors": exc.topic_errors}


def _csrf_ok(request: Request, form) -> bool:
    return pages_of(request).csrf.valid(request.cookies.get(COOKIE), form.get(FIELD))


def _csrf_error(request: Request):
    return pages_of(request).error(
        request, 403, "This form has expired", "Reload the page and submit the form again (cookies must be enabled)."
    )


# ---------------------------------------------------------------- landing and subscribe


def _landing(request: Request, values: dict | None = None, errors: dict | None = None, status: int = 200):
    with unit_of_work(request) as session:
        edition, papers = read.edition_sample(session)
        return pages_of(request).render(
            request,
            "landing.html",
            {"edition": edition, "papers": papers, "values": values or {}, **(errors or {"errors": {}, "topic_errors": []})},
            status=status,
        )


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request):
    return await run_in_threadpool(_landing, request)


@router.post("/subscribe")
async def subscribe(request: Request):
    client = request.client.host if request.client else "unknown"
    if not await run_in_threadpool(request.app.state.limiter.allow, client):
        counters.subscribe_refused()
        return pages_of(request).error(
            request, 429, "Too many requests", "This address sent too many subscribe requests. Try again in an hour.",
            headers={"Retry-After": "3600"},
        )
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)
    values = {k: str(form.get(k, "")) for k in ("email", "topics", "timezone", "hour")}
    try:  # checks the form alone: no database, so its time cannot tell a known address from a new one
        subs.check_single_line_fields(form.multi_items())
        wanted = subs.read_subscribe_request(values["email"], values["topics"], values["timezone"] or None,
                                             values["hour"] or None)
    except subs.InvalidInput as exc:
        return await run_in_threadpool(_landing, request, values, _form_errors(exc), 422)
    # Everything that touches the store happens after the answer, the same answer for everyone.
    task = BackgroundTask(subs.subscribe_in_background, request.app.state.sessions, wanted, settings_of(request),
                          request.app.state.transport)
    return RedirectResponse("/subscribed", status_code=303, background=task)


@router.get("/subscribed", response_class=HTMLResponse)
async def subscribed(request: Request):
    return pages_of(request).render(request, "subscribed.html")


# ---------------------------------------------------------------- confirm


@router.get("/confirm/{token}", response_class=HTMLResponse)
async def confirm_page(request: Request, link: Link = link_to("confirm")):
    def work():
        with link.open(request) as (session, subscriber):
            return pages_of(request).render(
                request, "confirm.html",
                {"subscriber": subscriber, "topics": subs.topics_to_confirm(subscriber, link.claims.request),
                 "token": link.token, "settings_url": settings_url(subscriber, settings_of(request))},
            )

    return await run_in_threadpool(work)


@router.post("/confirm/{token}")
async def confirm(request: Request, link: Link = link_to("confirm")):
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)

    def work():
        with link.open(request) as (session, subscriber):
            try:
                subs.confirm_link(session, subscriber, link.claims.request)
            except subs.TopicErrors:
                return pages_of(request).error(
                    request, 409, "These topics are no longer accepted",
                    "The topics in this link no longer pass the checks. Subscribe again on the home page.",
                )
            except subs.InvalidInput:
                return pages_of(request).error(
                    request, 409, "This subscription was ended",
                    "You unsubscribed after this link was sent. To receive the digest again, subscribe on the home page.",
                )
            target = f"/settings/{make_token(subscriber, 'settings', settings_of(request))}?confirmed=1"
        return RedirectResponse(target, status_code=303)

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- settings


def _settings_page(request, session, subscriber, token, values=None, errors=None, status=200, notice="",
                   liked_errors=()):
    topics_text = "\n".join(t.query for t in subscriber.topics)
    preview = None
    try:
        preview = read.preview_topics(session, values["topics"] if values else topics_text, subscriber.max_papers,
                                      subscriber=subscriber)
    except subs.InvalidInput:
        preview = None
    return pages_of(request).render(
        request, "settings.html",
        {
            "subscriber": subscriber, "token": token, "notice": notice, "preview": preview,
            "values": values or {
                "topics": topics_text, "frequency": subscriber.frequency.value, "weekday": subscriber.weekday,
                "hour": subscriber.delivery_hour, "timezone": subscriber.timezone,
                "max_papers": subscriber.max_papers, "notify_empty": subscriber.notify_empty,
                "learn_from_feedback": subscriber.learn_from_feedback,
                "suggest_beyond_topics": subscriber.suggest_beyond_topics, "liked": "",
            },
            "marks": subs.marks(session, subscriber), "liked_errors": list(liked_errors),
            "max_liked_lines": subs.MAX_LIKED_LINES,
            "weekdays": subs.WEEKDAYS, "max_papers_limit": subs.MAX_PAPERS_LIMIT,
            "unsubscribe_token": make_token(subscriber, "unsubscribe", settings_of(request)),
            **(errors or {"errors": {}, "topic_errors": []}),
        },
        status=status,
    )


TOO_SLOW = "These topics take too long to preview: fewer or narrower topics would show one. Your digest is not affected."
TOO_MANY_PREVIEWS = "Too many previews in a minute: the preview comes back in a moment."
BUSY = "The server is busy: try again in a moment."


async def _over_preview_limit(request: Request, link: Link) -> bool:
    client = request.client.host if request.client else "unknown"
    return not await run_in_threadpool(request.app.state.limiter.allow_preview, link.claims.subscriber_id, client,
                                       settings_of(request).preview_rate_limit)


async def _matching(request: Request, work, as_json: bool):
    """Run a request that matches topics within the process's capacity (digest/web/capacity.py)."""
    try:
        return await request.app.state.capacity.run(work)
    except Busy:
        if as_json:
            return JSONResponse({"message": BUSY, "errors": []}, status_code=503, headers={"Retry-After": "2"})
        return pages_of(request).error(request, 503, "Busy", BUSY, headers={"Retry-After": "2"})


@router.get("/settings/{token}", response_class=HTMLResponse)
async def settings_page(request: Request, link: Link = link_to("settings")):
    notice = {"confirmed": "Your subscription is confirmed. Your first digest comes at your delivery hour.",
              "saved": "Your settings are saved.", "removed": "That mark is removed."}
    key = next((k for k in notice if k in request.query_params), None)
    if await _over_preview_limit(request, link):
        return pages_of(request).error(request, 429, "Too many requests", TOO_MANY_PREVIEWS, headers={"Retry-After": "60"})

    def work():
        with link.open(request) as (session, subscriber):
            return _settings_page(request, session, subscriber, link.token, notice=notice.get(key, ""))

    return await _matching(request, work, as_json=False)


@router.post("/settings/{token}")
async def save_settings(request: Request, link: Link = link_to("settings")):
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)
    values = {k: str(form.get(k, "")) for k in ("topics", "frequency", "weekday", "hour", "timezone", "max_papers")}
    values["notify_empty"] = form.get("notify_empty") == "on"
    choices = {k: form.get(k) == "on" for k in ("learn_from_feedback", "suggest_beyond_topics")}
    liked = subs.read_liked_lines(str(form.get("liked", "")))

    def refused(session, subscriber, exc: subs.InvalidInput):
        shown = {**values, **choices, "liked": str(form.get("liked", ""))}
        return _settings_page(request, session, subscriber, link.token, shown, _form_errors(exc), 422)

    def check():
        subs.check_single_line_fields(form.multi_items(), frozenset({"topics", "liked"}))
        subs.check_settings(subs.SettingsForm(**values))

    def work():
        # The link's row and the form are checked before arXiv is asked anything on their behalf.
        with link.open(request, read_only=True) as (session, subscriber):
            try:
                check()
            except subs.InvalidInput as exc:
                return refused(session, subscriber, exc)
        # Papers the store lacks are looked up on arXiv now, with no transaction open.
        lookup = subs.look_up_liked(request.app.state.sessions, liked, settings_of(request))
        with link.open(request) as (session, subscriber):
            try:  # the form was checked above; update_settings checks its fields again before writing
                subs.update_settings(session, subscriber, subs.SettingsForm(**values))
            except subs.InvalidInput as exc:  # validated before any write: nothing to undo
                return refused(session, subscriber, exc)
            subs.save_choices(session, subscriber, learn=choices["learn_from_feedback"],
                              suggest=choices["suggest_beyond_topics"])
            try:
                outcome = subs.like_papers(session, subscriber, liked, lookup)
            except subs.NotSubscribed:
                outcome = subs.LikedOutcome(errors=[subs.LineError(n, t, "you are unsubscribed: subscribe again "
                                                                   "on the home page to add papers you like")
                                                    for n, t, _ in liked.ids] + liked.errors)
            if outcome.errors:
                # Everything else is saved; the lines that were not stay in the box, each with its error.
                kept = "\n".join(error.text for error in outcome.errors)
                saved = len(outcome.saved)
                notice = (f"Your settings are saved, with {saved} paper{'' if saved == 1 else 's'} you like. "
                          "The lines below were not: fix them and save again.")
                shown = {**values, **choices, "liked": kept}
                return _settings_page(request, session, subscriber, link.token, shown, None, 422, notice,
                                      liked_errors=outcome.errors)
        return RedirectResponse(f"/settings/{link.token}?saved=1", status_code=303)

    return await run_in_threadpool(work)


@router.post("/settings/{token}/feedback/remove")
async def remove_mark(request: Request, link: Link = link_to("settings")):
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)
    paper_id = str(form.get("paper_id", ""))

    def work():
        with link.open(request) as (session, subscriber):
            subs.remove(session, subscriber, paper_id)  # already gone: nothing to do, same answer
        return RedirectResponse(f"/settings/{link.token}?removed=1", status_code=303)

    return await run_in_threadpool(work)


@router.get("/settings/{token}/preview")
async def preview(request: Request, topics: str = "", max_papers: str = "", link: Link = link_to("settings", as_json=True)):
    """The live preview: JSON for the settings page's script (GET: it changes nothing)."""
    if await _over_preview_limit(request, link):
        return JSONResponse({"message": TOO_MANY_PREVIEWS, "errors": []}, status_code=429, headers={"Retry-After": "60"})

    def work():
        with link.open(request) as (session, subscriber):
            try:
                result = read.preview_topics(session, topics, max_papers or subscriber.max_papers, subscriber=subscriber)
            except subs.InvalidInput as exc:
                return JSONResponse({"errors": [{"topic": t, "message": m} for t, m in exc.topic_errors]
                                     or [{"topic": "", "message": m} for m in exc.errors.values()]}, status_code=422)
            if result.too_slow:
                return JSONResponse({"message": TOO_SLOW, "errors": []}, status_code=422)
            return JSONResponse({
                "edition": result.edition.isoformat() if result.edition else None,
                "total": result.total,
                "papers": [{"id": p.id, "title": p.title, "url": p.abs_url, "reason": why}
                           for p, why in zip(result.papers, result.reasons)],
            })

    return await _matching(request, work, as_json=True)


@router.get("/settings/{token}/export")
async def export(request: Request, link: Link = link_to("settings")):
    def work():
        with link.open(request) as (session, subscriber):
            data = subs.export(session, subscriber)
        return Response(
            json.dumps(data, indent=2, ensure_ascii=False), media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="daily-papers-digest-data.json"'},
        )

    return await run_in_threadpool(work)


@router.post("/settings/{token}/delete")
async def delete(request: Request, link: Link = link_to("settings")):
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)

    def work():
        with link.open(request) as (session, subscriber):
            if form.get("confirm_delete") != "yes":
                return _settings_page(request, session, subscriber, link.token, None,
                                      {"errors": {"delete": "tick the box to confirm the deletion"}, "topic_errors": []}, 422)
            subs.delete(session, subscriber)
        return pages_of(request).render(request, "deleted.html")

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- feedback from the email
# A GET shows the paper and one button and records nothing (mail scanners fetch every link);
# the POST records, idempotently; the confirmation page offers Undo (a POST too).

FEEDBACK_REFUSED_UNSUBSCRIBED = (
    "Nothing was recorded: this address is unsubscribed, so there is no digest for this choice to change. "
    "To receive the digest again, subscribe on the home page; your marks will count from then on."
)
FEEDBACK_PAPER_GONE = "Nothing was recorded: this paper is no longer in our store."


async def _over_feedback_limit(request: Request) -> bool:
    client = request.client.host if request.client else "unknown"
    return not await run_in_threadpool(request.app.state.limiter.allow, client, "feedback",
                                       settings_of(request).feedback_rate_limit, 60)


def _feedback_answer(request: Request, link: FeedbackLink, act=None, state: str = "ask", read_only: bool = False):
    """The feedback page of `state` ("ask", "recorded", "undone") after `act(session, subscriber,
    claims)`, or the page that says why nothing was recorded."""
    with link.open(request, read_only) as (session, subscriber, claims):
        try:
            subs.check_subscribed(subscriber)
            paper = subs.paper_of(session, claims.paper_id)
            if act is not None:
                act(session, subscriber, claims)
        except subs.NotSubscribed:
            return pages_of(request).error(request, 409, "You are unsubscribed", FEEDBACK_REFUSED_UNSUBSCRIBED)
        except subs.PaperGone:
            return pages_of(request).error(request, 404, "This paper is no longer here", FEEDBACK_PAPER_GONE)
        return pages_of(request).render(
            request, "feedback.html",
            {"paper": paper, "action": claims.action, "state": state, "token": link.token,
             "mark": subs.mark_of(session, subscriber, claims.paper_id),
             "learning": subscriber.learn_from_feedback,
             "settings_url": settings_url(subscriber, settings_of(request))},
        )


@router.get("/feedback/{token}", response_class=HTMLResponse)
async def feedback_page(request: Request, link: FeedbackLink = feedback_link()):
    return await run_in_threadpool(_feedback_answer, request, link, None, "ask", True)


async def _feedback_post(request: Request, link: FeedbackLink, act, state: str):
    if await _over_feedback_limit(request):
        return pages_of(request).error(request, 429, "Too many requests",
                                       "Too many choices in a minute from this address: try again in a minute.",
                                       headers={"Retry-After": "60"})
    form = await request.form()
    if not _csrf_ok(request, form):
        return _csrf_error(request)
    return await run_in_threadpool(_feedback_answer, request, link, act, state)


@router.post("/feedback/{token}")
async def give_feedback(request: Request, link: FeedbackLink = feedback_link()):
    def act(session, subscriber, claims):
        subs.record(session, subscriber, claims.paper_id, claims.action == "more", source="email")

    return await _feedback_post(request, link, act, "recorded")


@router.post("/feedback/{token}/undo")
async def undo_feedback(request: Request, link: FeedbackLink = feedback_link()):
    def act(session, subscriber, claims):
        subs.undo(session, subscriber, claims.paper_id)

    return await _feedback_post(request, link, act, "undone")


# ---------------------------------------------------------------- unsubscribe


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(request: Request, link: Link = link_to("unsubscribe")):
    def work():
        with link.open(request) as (session, subscriber):
            return pages_of(request).render(
                request, "unsubscribe.html",
                {"subscriber": subscriber, "topics": [t.query for t in subscriber.topics], "token": link.token,
                 "unsubscribed": subscriber.status == SubscriberStatus.unsubscribed},
            )

    return await run_in_threadpool(work)


@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, link: Link = link_to("unsubscribe")):
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if not one_click and not _csrf_ok(request, form):
        return _csrf_error(request)
    topic = form.get("topic")

    def work():
        with link.open(request) as (session, subscriber):
            if one_click or not topic:
                subs.unsubscribe(session, subscriber)
                return pages_of(request).render(request, "unsubscribed.html", {"subscriber": subscriber})
            try:
                subs.drop_topic(session, subscriber, str(topic))
            except subs.InvalidInput as exc:
                return pages_of(request).error(request, 422, "That topic could not be dropped", next(iter(exc.errors.values())))
            return pages_of(request).render(
                request, "topic_dropped.html",
                {"subscriber": subscriber, "topic": topic, "topics": [t.query for t in subscriber.topics],
                 "settings_url": settings_url(subscriber, settings_of(request))},
            )

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- full edition for one subscriber


@router.get("/digest/{edition}/{token}", response_class=HTMLResponse)
async def edition_page(request: Request, edition: str, link: Link = link_to("view")):
    def work():
        try:
            day = date.fromisoformat(edition)
        except ValueError:
            return pages_of(request).error(request, 404, "No such edition", "The date in this link is not a date.")
        with link.open(request) as (session, subscriber):
            html = full_edition_page(session, settings_of(request), subscriber, day)
        return HTMLResponse(html, headers={"Content-Security-Policy": EMAIL_PAGE_POLICY})

    return await _matching(request, work, as_json=False)


@router.get("/healthz")
async def healthz():
    return {"ok": True}

