"""The quick start's demo subscriber: so that a first `digest run` ends with a digest to open."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.models import Subscriber, SubscriberStatus, Topic

DEMO_EMAIL = "demo@example.org"
DEMO_TOPICS = ("pretraining", "diffusion", "speech OR audio")


def ensure_demo_subscriber(factory: Callable[[], Session]) -> bool:
    """Create the demo subscriber when there are no subscribers at all; True if it was created."""
    with factory() as session, session.begin():
        if session.scalar(select(func.count()).select_from(Subscriber)):
            return False
        now = datetime.now(timezone.utc)
        subscriber = Subscriber(email=DEMO_EMAIL, status=SubscriberStatus.active, confirmed_at=now, created_at=now)
        subscriber.topics = [Topic(query=q, position=i) for i, q in enumerate(DEMO_TOPICS)]
        session.add(subscriber)
    return True


def is_demo_only(factory: Callable[[], Session]) -> bool:
    with factory() as session:
        emails = list(session.scalars(select(Subscriber.email).limit(2)))
    return emails == [DEMO_EMAIL]


def write_html_beside(eml: Path) -> Path | None:
    """The HTML part of an .eml as a file a browser opens (file:// links and all)."""
    message = email.message_from_bytes(Path(eml).read_bytes(), policy=email.policy.default)
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    html = Path(eml).with_suffix(".html")
    html.write_text(part.get_content(), encoding="utf-8")
    return html
