"""The admin console at /admin: parse, call one function of digest.operations, render.

Every path answers 404 unless DIGEST_ADMIN_USER and DIGEST_ADMIN_PASSWORD are set; every page but
the sign-in form needs the signed session cookie (otherwise: 303 to the form). Every change is a
POST with the CSRF token, audited by the library; its outcome comes back as a signed notice on the
page it redirects to, so no one can make the console show words of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from digest import counters, operations
from digest.web.csrf import COOKIE as CSRF_COOKIE
from digest.web.csrf import FIELD as CSRF_FIELD
from digest.web.deps import pages_of, settings_of, unit_of_work
from digest.web.ratelimit import RateLimiter

router = APIRouter(prefix="/admin")
LOGIN_WINDOW = 900  # seconds: DIGEST_ADMIN_LOGIN_RATE_LIMIT sign-in posts per client per window
NEXT_PAGE = re.compile(r"^/admin(/subscribers/\d+|/suppressions|/deliveries|/subscribers)?$")


class SignInRequired(Exception):
    """No valid session cookie: the answer is the sign-in form."""


def install(app: FastAPI) -> None:
    settings = app.state.settings
    app.state.login_limiter = RateLimiter(settings.admin_login_rate_limit, window=LOGIN_WINDOW,
                                          redis_url=settings.broker_url, prefix=f"{app.state.limiter.prefix}:admin")

    async def sign_in_first(request: Request, exc: SignInRequired):
        return RedirectResponse("/admin/login", status_code=303)

    app.add_exception_handler(SignInRequired, sign_in_first)
    app.include_router(router)


def console_on(request: Request) -> None:
    if not settings_of(request).admin_enabled:
        raise StarletteHTTPException(404)


def operator(request: Request) -> str:
    console_on(request)
    user = operations.signed_in_user(settings_of(request), request.cookies.get(operations.ADMIN_COOKIE))
    if user is None:
        raise SignInRequired()
    return user


def _notices(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(settings_of(request).secret_key, salt="digest.admin.notice")


def _page(request: Request, name: str, user: str | None, context: dict | None = None, status: int = 200):
    notice = ""
    if signed := request.query_params.get("notice"):
        try:
            notice = str(_notices(request).loads(signed))
        except BadSignature:
            notice = ""
    return pages_of(request).render(request, f"admin/{name}", {"user": user, "notice": notice, **(context or {})},
                                    status=status)


def _back(request: Request, target: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{target}?notice={_notices(request).dumps(message)}", status_code=303)


async def _act(request: Request, user: str, target: str, action: Callable) -> object:
    """A POST: check the CSRF token, run `action(session, form)` in one unit of work, go back to
    `target` (or the form's own `next`, when it is one of the console's pages) with its message."""
    form = await request.form()
    if not pages_of(request).csrf.valid(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        return pages_of(request).error(request, 403, "This form has expired", "Reload the page and submit it again.")
    wanted = str(form.get("next", ""))
    target = wanted if NEXT_PAGE.match(wanted) else target

    def work():
        try:
            with unit_of_work(request) as session:
                message = action(session, form)
        except operations.ActionRefused as exc:
            message = f"Nothing changed: {exc}."
        return _back(request, target, message)

    return await run_in_threadpool(work)


# ---------------------------------------------------------------- signing in and out


@router.get("/login", dependencies=[Depends(console_on)])
async def login_page(request: Request):
    return _page(request, "login.html", None)


@router.post("/login", dependencies=[Depends(console_on)])
async def login(request: Request):
    settings = settings_of(request)
    client = request.client.host if request.client else "unknown"
    if not await run_in_threadpool(request.app.state.login_limiter.allow, client, "admin-login"):
        counters.admin_login("rate_limited")
        return _page(request, "login.html", None, {"error": "Too many sign-in attempts from this address. Wait 15 minutes."},
                     status=429)
    form = await request.form()
    if not pages_of(request).csrf.valid(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
        return _page(request, "login.html", None, {"error": "The form expired: sign in again."}, status=403)
    if not operations.credentials_match(settings, str(form.get("user", "")), str(form.get("password", ""))):
        counters.admin_login("refused")
        return _page(request, "login.html", None, {"error": "Wrong user name or password."}, status=401)
    counters.admin_login("ok")

    def work():
        with unit_of_work(request) as session:
            operations.signed_in(session, settings.admin_user)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(operations.ADMIN_COOKIE, operations.session_cookie(settings),
                            max_age=operations.session_seconds(settings), path="/admin", httponly=True,
                            samesite="strict", secure=settings.base_url.startswith("https"))
        return response

    return await run_in_threadpool(work)


@router.post("/logout")
async def logout(request: Request, user: str = Depends(operator)):
    response = await _act(request, user, "/admin/login", lambda session, form: operations.signed_out(session, user))
    response.delete_cookie(operations.ADMIN_COOKIE, path="/admin")
    return response


# ---------------------------------------------------------------- pages


async def _show(request: Request, user: str, name: str, context_of) -> HTMLResponse:
    """A console page whose context `context_of(session)` reads from the store, off the event loop."""
    def work():
        with unit_of_work(request) as session:
            return _page(request, name, user, context_of(session))

    return await run_in_threadpool(work)


@router.get("")
async def overview_page(request: Request, user: str = Depends(operator)):
    late_minutes = int(operations.LATE_AFTER.total_seconds() // 60)
    return await _show(request, user, "overview.html",
                       lambda session: {"o": operations.overview(session), "late_minutes": late_minutes})


@router.get("/subscribers")
async def subscribers_page(request: Request, q: str = "", before: int | None = None, user: str = Depends(operator)):
    return await _show(request, user, "subscribers.html",
                       lambda session: {"q": q, "subscribers": operations.search_subscribers(session, q[:320], before)})


@router.get("/subscribers/{subscriber_id}")
async def subscriber_detail(request: Request, subscriber_id: int, user: str = Depends(operator)):
    def work():
        with unit_of_work(request) as session:
            page = operations.subscriber_page(session, subscriber_id)
            if page is None:
                return pages_of(request).error(request, 404, "No such subscriber", "It may have been deleted.")
            return _page(request, "subscriber.html", user, {"p": page})

    return await run_in_threadpool(work)


@router.get("/deliveries")
async def deliveries_page(request: Request, user: str = Depends(operator)):
    return await _show(request, user, "deliveries.html",
                       lambda session: {"rows": operations.problem_deliveries(session)})


@router.get("/suppressions")
async def suppressions_page(request: Request, q: str = "", user: str = Depends(operator)):
    return await _show(request, user, "suppressions.html",
                       lambda session: {"q": q, "rows": operations.suppressions(session, q[:320])})


@router.get("/audit")
async def audit_page(request: Request, user: str = Depends(operator)):
    return await _show(request, user, "audit.html", lambda session: {"entries": operations.audit_entries(session)})


# ---------------------------------------------------------------- actions (POST only)


@router.post("/subscribers/{subscriber_id}/resend-confirmation")
async def resend(request: Request, subscriber_id: int, user: str = Depends(operator)):
    settings, transport = settings_of(request), request.app.state.transport
    return await _act(request, user, f"/admin/subscribers/{subscriber_id}", lambda session, form:
                      operations.resend_confirmation(session, settings, user, subscriber_id, transport=transport))


@router.post("/subscribers/{subscriber_id}/suppress")
async def suppress(request: Request, subscriber_id: int, user: str = Depends(operator)):
    return await _act(request, user, f"/admin/subscribers/{subscriber_id}",
                      lambda session, form: operations.suppress(session, user, subscriber_id))


@router.post("/subscribers/{subscriber_id}/delete")
async def delete(request: Request, subscriber_id: int, user: str = Depends(operator)):
    def action(session, form):
        if form.get("confirm_delete") != "yes":
            raise operations.ActionRefused("tick the box to confirm the deletion")
        return operations.delete_subscriber(session, user, subscriber_id)

    return await _act(request, user, "/admin/subscribers", action)


@router.post("/suppressions/remove")
async def remove_suppression(request: Request, user: str = Depends(operator)):
    settings = settings_of(request)
    return await _act(request, user, "/admin/suppressions", lambda session, form:
                      operations.remove_suppression(session, settings, user, str(form.get("email", ""))))


@router.post("/deliveries/{delivery_id}/retry")
async def retry(request: Request, delivery_id: int, user: str = Depends(operator)):
    return await _act(request, user, "/admin/deliveries",
                      lambda session, form: operations.retry_delivery(session, user, delivery_id))
