"""Validation of what people type: addresses, topics, time zones, hours. Every check raises
InvalidInput naming the field; the form layers show the message as it is.

- Email addresses are validated by email-validator (no DNS lookup) and stored lower-cased.
- A CR, LF or other control character in any field is refused before it can reach a header;
  only the topics box may hold several lines, and it is split on them.
- Topics are optional: a reader without any gets the edition's papers by upvotes (trending).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from digest.errors import DigestError
from digest.matching import SAVED_TOPIC_LIMITS, QueryError, parse_query, validate_topics

MAX_TOPICS = 20
MAX_TOPIC_LENGTH = SAVED_TOPIC_LIMITS.length  # 200; the words and prefixes a topic may have too
MAX_PAPERS_LIMIT = 50
DEFAULT_MAX_PAPERS = 10
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SINGLE_LINE = "must be one line of text without control characters"
NEEDS_SMTPUTF8 = (
    "this address has non-ASCII characters before the @, which this service cannot send to; "
    "use an address with only ASCII letters before the @ (accents in the domain are fine)"
)


class InvalidInput(DigestError):
    """One or more fields are wrong; `errors` maps each field (or topic) to its message."""

    def __init__(self, errors: dict[str, str] | list[tuple[str, str]]) -> None:
        self.errors: dict[str, str] = dict(errors)
        self.topic_errors: list[tuple[str, str]] = list(errors) if isinstance(errors, list) else []
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class TopicErrors(InvalidInput):
    """Topics the query parser refused: a list of (topic, message), in the order given."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.topic_errors = errors
        self.args = ("; ".join(f"topic {t!r}: {m}" for t, m in errors),)


def reject_control_characters(name: str, value: str | None) -> None:
    if value and _CONTROL.search(value):
        raise InvalidInput({name: SINGLE_LINE})


def normalise_email(email: str) -> str:
    """The address as stored: validated (syntax only, no DNS) and lower-cased."""
    if not isinstance(email, str) or not email.strip():
        raise InvalidInput({"email": "an email address is required"})
    reject_control_characters("email", email)
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput({"email": str(exc)}) from None
    if result.smtputf8:
        # The messages this service writes are ASCII (an accented domain is IDNA-encoded): an
        # address that needs SMTPUTF8 (é@example.org) could never be mailed, so it is never stored.
        raise InvalidInput({"email": NEEDS_SMTPUTF8})
    return result.normalized.lower()


def split_topics(text: str) -> list[str]:
    """Topics from a text box: one per line; semicolons also separate, and commas outside quotes."""
    topics: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        if char == "\n":
            quoted = False
            topics.append("".join(current))
            current = []
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == ";" or (char == "," and not quoted):
            topics.append("".join(current))
            current = []
        else:
            current.append(char)
    topics.append("".join(current))
    return [" ".join(t.split()) for t in topics if t.strip()]


def _query_error(topic: str) -> str | None:
    """The matching parser's message for a topic it refuses (where and why), or None."""
    try:
        parse_query(topic, SAVED_TOPIC_LIMITS)
    except QueryError as exc:
        return exc.message + (f" at column {exc.column}" if exc.column else "")
    return None


def clean_topics(topics: Iterable[str] | str) -> list[str]:
    """Validated, de-duplicated topics in the order given; TopicErrors names every bad one. No
    topics at all is a choice, not an error: that reader gets the day's trending papers."""
    raw = split_topics(topics) if isinstance(topics, str) else list(topics)
    errors: list[tuple[str, str]] = []
    cleaned: list[str] = []
    for topic in raw:
        if not isinstance(topic, str):
            errors.append((str(topic), "must be text"))
            continue
        if _CONTROL.search(topic):
            errors.append((topic, SINGLE_LINE))
            continue
        topic = " ".join(topic.split())
        if not topic:
            continue
        if len(topic) > MAX_TOPIC_LENGTH:
            errors.append((topic, f"is longer than {MAX_TOPIC_LENGTH} characters"))
            continue
        message = _query_error(topic)
        if message:
            errors.append((topic, message))
        else:
            cleaned.append(topic)
    if errors:
        raise TopicErrors(errors)
    # The parser's own tidying and de-duplication ("LLMs" and "llm" are one topic), and the words
    # all topics may have together.
    try:
        cleaned = validate_topics(cleaned, SAVED_TOPIC_LIMITS)
    except QueryError as exc:
        raise InvalidInput({"topics": exc.message}) from None
    if len(cleaned) > MAX_TOPICS:
        raise InvalidInput({"topics": f"at most {MAX_TOPICS} topics, got {len(cleaned)}"})
    return cleaned


def check_timezone(name: str | None) -> str | None:
    if name is None or name == "":
        return None
    reject_control_characters("timezone", name)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput({"timezone": f"unknown time zone {name!r} (use a name like Europe/Berlin)"}) from None
    return name


def int_field(name: str, value, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput({name: f"must be a whole number from {low} to {high}"}) from None
    if not low <= number <= high:
        raise InvalidInput({name: f"must be from {low} to {high}"})
    return number


def check_hour(value) -> int | None:
    return int_field("hour", value, 0, 23)



@dataclass(frozen=True)
class SubscribeRequest:
    """What a subscribe form or command asked for, every field checked (no database needed)."""

    email: str
    topics: tuple[str, ...]
    timezone: str | None = None
    hour: int | None = None


def read_subscribe_request(email, topics, timezone=None, hour=None) -> SubscribeRequest:
    """The checked request, or InvalidInput for the first bad field (address, topics, zone, hour)."""
    return SubscribeRequest(normalise_email(email), tuple(clean_topics(topics)), check_timezone(timezone),
                            check_hour(hour))


def check_single_line_fields(fields: Iterable[tuple[str, object]], multiline: frozenset[str] = frozenset({"topics"})) -> None:
    """Every field of a form but `multiline` ones must be one line: a line break in any of them
    could forge a mail header. Raises InvalidInput for the first that is not."""
    for name, value in fields:
        if name not in multiline and isinstance(value, str):
            reject_control_characters(name, value)


def page_limit(value, default: int) -> int:
    """A papers-per-email value from a request, kept within 1..MAX_PAPERS_LIMIT; `default` when
    it is missing or not a number."""
    try:
        limit = int(value) if value else default
    except (TypeError, ValueError):
        return default
    return min(max(limit, 1), MAX_PAPERS_LIMIT)
