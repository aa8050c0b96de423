"""Templates rendered once into skeletons, cut at their slots: each email then costs a string join.

Every template under templates/email/<name>/ is rendered by Jinja2 ONCE (per template, or per
edition for the digest) as a *skeleton*, in which whatever differs per email is a named slot
(`{{ slot("view_url") }}`) and whatever repeats is a named part (`{% call part("card") %}...
{% endcall %}`). The skeleton is inlined by premailer once, then cut at its slots into a
`Fragment`. Per email only the subscriber's values are escaped and joined.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from premailer import Premailer

from digest.config import REPO_ROOT

TEMPLATES_DIR = REPO_ROOT / "templates" / "email"

_SLOT_TOKEN = "__dpd_{}__"
_SLOT_RE = re.compile(r"__dpd_([a-z]+(?:_[a-z]+)*)__|<!--slot:([a-z_]+)-->")
# A part (or a sample) with no other part inside it: parts are cut innermost first.
_PART_RE = re.compile(
    r"<!--(part|sample):([a-z_]+)-->((?:(?!<!--(?:part|sample):).)*?)<!--/\1:\2-->", re.DOTALL
)


@dataclass(frozen=True)
class Fragment:
    """Literal text with named holes: literals[0] slot[0] literals[1] ... literals[-1]."""

    literals: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Fragment:
        literals, names, pos = [], [], 0
        for found in _SLOT_RE.finditer(text):
            literals.append(text[pos : found.start()])
            names.append(found.group(1) or found.group(2))
            pos = found.end()
        literals.append(text[pos:])
        return cls(tuple(literals), tuple(names))

    def fill(self, values: Mapping[str, str]) -> str:
        literals = self.literals
        out = [literals[0]]
        for i, name in enumerate(self.names, 1):
            out.append(values[name])
            out.append(literals[i])
        return "".join(out)

    def bind(self, values: Mapping[str, str]) -> Fragment:
        """Fill some slots now (per edition), leave the others for later (per subscriber)."""
        literals, names = [self.literals[0]], []
        for i, name in enumerate(self.names, 1):
            if name in values:
                literals[-1] += values[name] + self.literals[i]
            else:
                names.append(name)
                literals.append(self.literals[i])
        return Fragment(tuple(literals), tuple(names))


@dataclass(frozen=True)
class Skeleton:
    main: Fragment
    parts: Mapping[str, Fragment]  # repeated fragments; each also left a slot of its name in its parent
    samples: Mapping[str, Fragment]  # style samples cut out of the page (e.g. the highlight mark)


def _slot(name: str) -> Markup:
    return Markup(_SLOT_TOKEN.format(name))


def _part(name: str, caller) -> Markup:
    # caller() is Markup in HTML templates (already escaped) and str in text ones (no escaping).
    return Markup(f"<!--part:{name}-->{caller()}<!--/part:{name}-->")


def _sample(name: str, caller) -> Markup:
    return Markup(f"<!--sample:{name}-->{caller()}<!--/sample:{name}-->")


def _cut(text: str) -> Skeleton:
    parts: dict[str, Fragment] = {}
    samples: dict[str, Fragment] = {}

    def take(found: re.Match) -> str:
        kind, name, body = found.groups()
        target = parts if kind == "part" else samples
        if name in target:
            raise ValueError(f"template defines the {kind} {name!r} twice")
        target[name] = Fragment.parse(body)
        return f"<!--slot:{name}-->" if kind == "part" else ""

    while True:
        text, count = _PART_RE.subn(take, text)
        if not count:
            break
    return Skeleton(Fragment.parse(text), parts, samples)


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(slot=_slot, part=_part, sample=_sample)
    return env


def inline_css(html: str) -> str:
    """premailer: rules into style="" attributes; @media rules stay in a <style> in the head.
    Classes are kept so that those media rules (mobile, dark mode) still find their elements."""
    return Premailer(
        html,
        allow_network=False,
        disable_link_rewrites=True,
        disable_validation=True,
        remove_classes=False,
        keep_style_tags=False,
        strip_important=False,  # the @media rules left in <head> need their !important
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def skeleton(template: str, context: Mapping[str, object], *, inline: bool) -> Skeleton:
    rendered = _environment().get_template(template).render(**context)
    if inline:
        rendered = inline_css(rendered).encode("ascii", "xmlcharrefreplace").decode("ascii")
    else:  # text: no blank lines at the ends, one newline last
        rendered = rendered.strip() + "\n"
    return _cut(rendered)

