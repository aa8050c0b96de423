"""What a reader of the relevance benchmark does with their mail: read a digest's cards in order,
follow a link found by its label, and press the button of the page it opens, over HTTP, with a
browser's cookie jar (the pages' CSRF cookie) and the form's own hidden fields.

Nothing here knows the app's templates beyond what a person sees: cards are the blocks of the
HTML part that carry a paper's arXiv link, links are found by their words, and a page's form is
read generically (its action, method, fields and submit button).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urljoin

import httpx
from lxml import html as lxml_html

ARXIV_LINK = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?", re.IGNORECASE)
CARD_XPATH = '//*[contains(concat(" ", normalize-space(@class), " "), " card ")]'


class ReaderError(Exception):
    """Something a person would have seen go wrong (an error page, a missing form); one line."""


@dataclass
class Card:
    paper_id: str
    title: str
    links: dict[str, str] = field(default_factory=dict)  # label (as shown) -> URL, first of each

    def link(self, label: str) -> str | None:
        wanted = label.casefold()
        return next((url for text, url in self.links.items() if text.casefold() == wanted), None)


def words(element) -> str:
    return " ".join(element.text_content().split())


def html_part(message: EmailMessage) -> str | None:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else None


def links_of(message: EmailMessage) -> list[tuple[str, str]]:
    """(label, URL) of every link of the HTML part, in order."""
    body = html_part(message)
    if not body:
        return []
    return [(words(a), a.get("href")) for a in lxml_html.fromstring(body).iter("a") if a.get("href")]


def _card(element) -> Card | None:
    card = None
    for a in element.iter("a"):
        href = a.get("href") or ""
        if card is None:
            if match := ARXIV_LINK.search(href):
                card = Card(match.group(1), words(a))
            continue
        card.links.setdefault(words(a), href)
    return card


def read_cards(message: EmailMessage) -> list[Card]:
    """The digest's cards in order. A card is an element of class "card" holding a paper's arXiv
    link (the first such link names the paper); without such elements, the links in document
    order, a new card at each arXiv link to a paper other than the current one's."""
    body = html_part(message)
    if not body:
        return []
    document = lxml_html.fromstring(body)
    cards = [card for element in document.xpath(CARD_XPATH) if (card := _card(element)) is not None]
    if cards:
        return cards
    current: Card | None = None
    for a in document.iter("a"):
        href = a.get("href") or ""
        match = ARXIV_LINK.search(href)
        if match and (current is None or match.group(1) != current.paper_id):
            current = Card(match.group(1), words(a))
            cards.append(current)
        elif current is not None:
            current.links.setdefault(words(a), href)
    return cards


def _heading(page: httpx.Response) -> str:
    try:
        document = lxml_html.fromstring(page.text)
    except Exception:  # noqa: BLE001 - an empty or non-HTML answer has no heading
        return ""
    # What a person reads first on an error: the page's alert (a form's errors), else its heading.
    for found in (*document.xpath('//*[@role="alert"]')[:1], document.find(".//h1"), document.find(".//title")):
        if found is not None and words(found):
            return words(found)
    return ""


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]]  # successful controls, as a browser submits them (no button)
    buttons: list[tuple[str, str | None, str | None]]  # (words on it, name, value)


def forms_of(page: httpx.Response) -> list[Form]:
    document = lxml_html.fromstring(page.text)
    found = []
    for form in document.forms:
        action = urljoin(str(page.url), form.get("action") or str(page.url))
        buttons = []
        for control in form.iter("button", "input"):
            kind = (control.get("type") or ("submit" if control.tag == "button" else "text")).lower()
            if kind in ("submit", "image"):
                label = words(control) if control.tag == "button" else control.get("value") or ""
                buttons.append((label, control.get("name"), control.get("value")))
        found.append(Form(action, (form.get("method") or "get").lower(), list(form.form_values()), buttons))
    return found


class Reader:
    """One person's browser: its own cookies, redirects followed, every answer checked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client = httpx.Client(follow_redirects=True, timeout=60)
        self.presses = 0

    def close(self) -> None:
        self.client.close()

    def _check(self, page: httpx.Response, what: str) -> httpx.Response:
        if page.status_code >= 400:
            heading = _heading(page)
            raise ReaderError(f"{self.name}: {what} answered {page.status_code}" + (f" ({heading})" if heading else ""))
        return page

    def open(self, url: str) -> httpx.Response:
        return self._check(self.client.get(url), f"GET {url}")

    def submit(self, form: Form, values: dict[str, str] | None = None, button: int = 0) -> httpx.Response:
        """Submit `form` as a browser does: its fields (those in `values` replaced), then the
        pressed button's own name and value if it has a name."""
        values = dict(values or {})
        fields = [(name, values.pop(name) if name in values else value) for name, value in form.fields]
        fields += list(values.items())
        if form.buttons and form.buttons[button][1]:
            fields.append((form.buttons[button][1], form.buttons[button][2] or ""))
        grouped: dict[str, list[str]] = {}  # httpx takes repeated fields as a list per name
        for name, value in fields:
            grouped.setdefault(name, []).append(value)
        if form.method == "post":
            page = self.client.post(form.action, data=grouped)
        else:
            page = self.client.get(form.action, params=grouped)
        self.presses += 1
        return self._check(page, f"{form.method.upper()} {form.action}")

    def press(self, url: str, label: str | None = None) -> httpx.Response:
        """Open `url` and press the button of its form: the POST form whose button reads `label`
        when there is one, else the page's first POST form."""
        page = self.open(url)
        forms = [f for f in forms_of(page) if f.method == "post"]
        if not forms:
            raise ReaderError(f"{self.name}: the page at {url} has no form to press" +
                              (f" ({_heading(page)})" if _heading(page) else ""))
        if label:
            for form in forms:
                for n, (text, _, _) in enumerate(form.buttons):
                    if text.casefold() == label.casefold():
                        return self.submit(form, button=n)
        return self.submit(forms[0])
