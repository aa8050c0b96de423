"""What routes need from a request: the unit of work, the subscriber a link was signed for, the
pages renderer and the settings. A bad link is refused here, once, for every route."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from digest.config import Settings
from digest.db import session_scope
from digest.models import Subscriber
from digest.tokens import FeedbackClaims, InvalidToken, TokenClaims, read_feedback_token, subscriber_for, verify_token


def unit_of_work(request: Request, read_only: bool = False):
    """One transaction for the request's work: committed when the block ends without an error.
    `read_only`: a unit that only reads (it never takes SQLite's write lock)."""
    return session_scope(request.app.state.sessions, read_only=read_only)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def pages_of(request: Request):
    return request.app.state.pages


class LinkRefused(Exception):
    """A link whose token is not ours, not for this page, revoked or expired. The app answers it
    with the error page (or JSON, for the routes that speak JSON), and nothing has changed."""

    def __init__(self, cause: InvalidToken, as_json: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.as_json = as_json


@dataclass(frozen=True)
class Link:
    """A signed link of one purpose, its signature checked; `open` checks the row behind it."""

    token: str
    claims: TokenClaims
    as_json: bool = False

    @contextmanager
    def open(self, request: Request, read_only: bool = False) -> Iterator[tuple[Session, Subscriber]]:
        """The request's unit of work and the subscriber the link was signed for. A link whose
        subscriber is gone (or whose links were renewed) is refused once the unit of work has
        ended untouched: a refusal is not an error that undoes anything."""
        with unit_of_work(request, read_only) as session:
            try:
                subscriber = subscriber_for(session, self.claims)
            except InvalidToken as exc:
                refused = exc
            else:
                yield session, subscriber
                return
        raise LinkRefused(refused, self.as_json)


def link_to(purpose: str, as_json: bool = False):
    """The dependency of a route whose path carries a `{token}` for `purpose`."""

    def read(request: Request, token: str) -> Link:
        try:
            return Link(token, verify_token(token, purpose, settings_of(request)), as_json)
        except InvalidToken as exc:
            raise LinkRefused(exc, as_json) from None

    return Depends(read)


MAX_FEEDBACK_TOKEN = 400  # an id, an action, a paper id and a signature: about 70 characters


@dataclass(frozen=True)
class FeedbackLink:
    """A "More like this" / "Less like this" link of an email. Its signature binds the row's link
    secret, so it is checked with the row: in `open`, like a Link's subscriber."""

    token: str

    @contextmanager
    def open(self, request: Request, read_only: bool = False) -> Iterator[tuple[Session, Subscriber, FeedbackClaims]]:
        """The unit of work, the reader and what the link says; refused (LinkRefused, nothing
        changed) when tampered, foreign, or for a row deleted or whose links were renewed."""
        with unit_of_work(request, read_only) as session:
            try:
                subscriber, claims = read_feedback_token(session, self.token, settings_of(request))
            except InvalidToken as exc:
                refused = exc
            else:
                yield session, subscriber, claims
                return
        raise LinkRefused(refused, False)


def feedback_link():
    """The dependency of a route whose path carries a feedback `{token}`."""

    def read(token: str) -> FeedbackLink:
        if len(token) > MAX_FEEDBACK_TOKEN:
            raise LinkRefused(InvalidToken("this link is not valid"), False)
        return FeedbackLink(token)

    return Depends(read)
