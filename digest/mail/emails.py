"""Every email other than the digest, one folder each under templates/email/<name>/ (subject.txt,
body.txt, body.html extending the base), in the digest's look; and one function per email that
returns it ready to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from digest.config import Settings, get_settings
from digest.mail.fragments import TEMPLATES_DIR, Skeleton, skeleton
from digest.mail.message import build_message, to_bytes
from digest.mail.rendered import RenderedEmail
from digest.mail.text import escape_html, one_line, required_url, static_context, subscription_phrase


@dataclass(frozen=True)
class _CompiledEmail:
    subject: Skeleton
    text: Skeleton
    html: Skeleton


@lru_cache(maxsize=32)
def _compiled(name: str, settings: Settings) -> _CompiledEmail:
    if not re.fullmatch(r"[a-z_]+", name) or not (TEMPLATES_DIR / name / "body.html").is_file():
        raise ValueError(f"no email template {name!r} under {TEMPLATES_DIR}")
    context = static_context(settings, None)
    return _CompiledEmail(
        subject=skeleton(f"{name}/subject.txt", context, inline=False),
        text=skeleton(f"{name}/body.txt", context, inline=False),
        html=skeleton(f"{name}/body.html", context, inline=True),
    )


def _fill_generic(skeleton: Skeleton, context: Mapping[str, object], name: str, *, html: bool) -> str:
    convert = escape_html if html else (lambda v: str(v))
    values: dict[str, str] = {}
    for slot in skeleton.main.names:
        if slot not in context:
            raise TypeError(f"email {name!r} needs {slot}=...")
        value = context[slot]
        if slot in skeleton.parts:
            part = skeleton.parts[slot]
            items = [value] if isinstance(value, str) else list(value)  # type: ignore[arg-type]
            values[slot] = "".join(part.fill({"item": convert(item)}) for item in items)
        elif slot.endswith("_url"):
            values[slot] = convert(required_url(slot, str(value)))
        else:
            values[slot] = convert(value)
    return skeleton.main.fill(values)


def render_email(name: str, settings: Settings | None = None, **context) -> RenderedEmail:
    """Any email with a folder under templates/email/ (e.g. "confirm"), in the digest's look.
    Compiled and inlined once per template; each call only escapes and joins its values:
    render_email("confirm", email=..., confirm_url=..., topics=[...])."""
    settings = settings or get_settings()
    if name == "confirm" and "topics" in context:
        # What the reader asked for, in words: their topics, or the day's trending papers.
        context.setdefault("what", subscription_phrase(context["topics"], confirming=True))
    compiled = _compiled(name, settings)
    subject = one_line(_fill_generic(compiled.subject, context, name, html=False))
    page_context = {"subject": subject, **context}
    return RenderedEmail(
        subject=subject,
        html=_fill_generic(compiled.html, page_context, name, html=True),
        text=_fill_generic(compiled.text, context, name, html=False),
    )


def confirmation_message(settings: Settings, email: str, confirm_url: str, topics: Sequence[str]) -> bytes:
    """The confirmation email as sent (CRLF, DKIM-signed when configured). No List-Unsubscribe:
    the address is not on the list until it confirms."""
    rendered = render_email("confirm", settings, email=email, confirm_url=confirm_url, topics=list(topics))
    return to_bytes(build_message(rendered, email, settings, list_unsubscribe=False), settings)
