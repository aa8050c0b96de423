"""Sample digests for the rendering tests: the bundled papers, ranked by the real matcher."""

from __future__ import annotations

from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser

from digest.matching import EditionIndex, rank
from digest.models import Paper
from digest.mail import DigestLinks
from tests.factories import make_paper, sample_records

EDITION = date(2026, 11, 26)
LINKS = DigestLinks(
    settings_url="http://digest.test/settings/tok-settings",
    unsubscribe_url="http://digest.test/unsubscribe/tok-unsub",
    view_url="http://digest.test/digest/2026-11-26/tok-view",
    more_url="http://digest.test/digest/2026-11-26/tok-view",
)
NO_MORE = DigestLinks(LINKS.settings_url, LINKS.unsubscribe_url, LINKS.view_url, None)


def sample_papers() -> list[Paper]:
    papers = []
    for record in sample_records():
        fields = {k: record[k] for k in ("id", "title", "abstract", "authors", "upvotes") if k in record}
        fields["github_repo"] = record.get("github_repo")
        fields["project_page"] = record.get("project_page")
        fields["sources"] = ["hf"]
        papers.append(make_paper(**fields, edition=EDITION))
    return papers


def ranked(topics, papers=None):
    return rank(EditionIndex.build(papers or sample_papers()), topics)


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)


def body(message: EmailMessage, kind: str) -> str:
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the visible text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._in_head = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "head":
            self._in_head = True

    def handle_endtag(self, tag):
        if tag == "head":
            self._in_head = False

    def handle_data(self, data):
        if not self._in_head:
            self.text.append(data)

    @property
    def visible_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def all(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]
