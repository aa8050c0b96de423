"""The topic query language: parse a topic into a tree, or explain precisely why it cannot be.

    language models            every word must occur (AND; an explicit AND is accepted too)
    LLM OR "large language model"   either side
    "in-context learning"      a phrase: these words, in this order, adjacent
    diffusion -video           exclusion; -"phrase" and -(group) work too
    (speech OR audio) generation   grouping
    title: abstract: author: category:   fields (no prefix: title or abstract)
    robot*                     prefix: robot, robots, robotic, robotics

The tree is built from folded words (see normalize.py), and `Query.key` is a canonical spelling of
it, so "LLMs" and "llm", or "a b" and "b a", share one evaluation per edition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from digest.errors import DigestError
from digest.matching.normalize import compounds, joined, word_keys

MAX_TOPIC_LENGTH = 500  # the topics column holds 500 characters
MIN_PREFIX_LENGTH = 2  # "a*" would match half the edition


@dataclass(frozen=True)
class Limits:
    """How much one topic may ask for. Any query costs at most its words' and prefixes' worth of
    work (a prefix stands for at most index.MAX_PREFIX_EXPANSION words): the live preview of
    twenty topics at these limits costs a few times a plain one (bench/bench_preview.py)."""

    length: int = MAX_TOPIC_LENGTH
    words: int | None = None  # each part of a compound counts ("text-to-image": 3)
    prefixes: int | None = None
    all_words: int | None = None  # in all of a subscriber's topics together (validate_topics)


# What a subscriber may save (the forms, `digest subscribe`, `digest import`); `digest search`
# and stored topics are parsed with the plain limits.
SAVED_TOPIC_LIMITS = Limits(length=200, words=12, prefixes=4, all_words=80)

TITLE, ABSTRACT, AUTHOR, CATEGORY = 0, 1, 2, 3
FIELD_NAMES = {"title": TITLE, "abstract": ABSTRACT, "author": AUTHOR, "category": CATEGORY}
FIELD_LABELS = {number: name for name, number in FIELD_NAMES.items()}
DEFAULT_FIELDS = frozenset({TITLE, ABSTRACT})


class QueryError(DigestError):
    """A topic the parser cannot understand. `position` is the 0-based index of the offending
    character (None when the whole topic is at fault); messages count columns from 1."""

    def __init__(self, message: str, position: int | None = None, topic: str = ""):
        self.message = message
        self.position = position
        self.topic = topic
        super().__init__(str(self))

    @property
    def column(self) -> int | None:
        return None if self.position is None else self.position + 1

    def __str__(self) -> str:
        where = "" if self.position is None else f" at column {self.position + 1}"
        return f"topic '{self.topic}': {self.message}{where}"


# ---------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Word:
    """One query word. A compound ("pre-training") is one word whose `text` is its parts glued
    together; `parts` keeps them so that "text to image" still meets "text-to-image"."""

    text: str
    parts: tuple[str, ...]
    prefix: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.text,) if self.prefix else word_keys(self.text)

    def canonical(self) -> str:
        return f"{self.text}*" if self.prefix else "|".join(sorted(self.keys))


@dataclass(frozen=True, slots=True)
class Term:
    """Words that must stand adjacent, in order (one word, or a phrase), in one of `fields`."""

    words: tuple[Word, ...]
    fields: frozenset[int]

    def canonical(self) -> str:
        fields = ",".join(FIELD_LABELS[f] for f in sorted(self.fields))
        body = " ".join(word.canonical() for word in self.words)
        return f'{fields}:"{body}"' if len(self.words) > 1 else f"{fields}:{body}"


@dataclass(frozen=True, slots=True)
class AllWords:
    """Bare words side by side ("pre training"): each must occur, anywhere in `fields`, except that
    two neighbours may also occur glued together ("pretraining"), since spacing is a spelling."""

    words: tuple[Word, ...]
    fields: frozenset[int]

    def canonical(self) -> str:
        fields = ",".join(FIELD_LABELS[f] for f in sorted(self.fields))
        return f"{fields}:ALL(" + " ".join(word.canonical() for word in self.words) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    child: Node

    def canonical(self) -> str:
        return f"-{self.child.canonical()}"


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]

    def canonical(self) -> str:
        return "(" + " ".join(sorted(child.canonical() for child in self.children)) + ")"


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]

    def canonical(self) -> str:
        return "(" + " OR ".join(sorted(child.canonical() for child in self.children)) + ")"


Node = Term | AllWords | Not | And | Or


@dataclass(frozen=True)
class Query:
    text: str  # the topic as the subscriber wrote it (whitespace tidied)
    root: Node
    key: str  # canonical form: equal keys match the same papers

    @property
    def words(self) -> int:
        """Its words, as Limits counts them (each part of a compound)."""
        return sum(len(word.parts) for word in _words_of(self.root))


# ---------------------------------------------------------------- lexer

_FIELD_PREFIX = re.compile(r"([A-Za-z]+):")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ( ) PHRASE WORD OR AND NOT FIELD END
    position: int
    text: str = ""


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    at_term_start = True  # a "-" here means exclusion; inside a word it is a hyphen
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            at_term_start = True
        elif ch in "()":
            tokens.append(_Token(ch, i))
            i += 1
            at_term_start = ch == "("
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QueryError("unclosed quote", i)
            tokens.append(_Token("PHRASE", i, text[i + 1 : end]))
            i = end + 1
            at_term_start = False
        elif ch == "-" and at_term_start:
            if i + 1 >= n or text[i + 1].isspace() or text[i + 1] == ")":
                raise QueryError("'-' must be followed directly by a word, phrase or group", i)
            tokens.append(_Token("NOT", i))
            i += 1
        else:
            i, at_term_start = _lex_run(text, i, tokens)
    tokens.append(_Token("END", n))
    return tokens


def _lex_run(text: str, start: int, tokens: list[_Token]) -> tuple[int, bool]:
    """A run of characters up to a space, a bracket or a quote: a word, OR, AND, or a field
    prefix with what follows it. Returns where the run ended and whether a term starts there."""
    i, n = start, len(text)
    while i < n and not text[i].isspace() and text[i] not in '()"':
        i += 1
    run = text[start:i]
    field = _FIELD_PREFIX.match(run)
    followed = field is not None and (len(run) > field.end() or (i < n and text[i] in '("'))
    if field and field.group(1).lower() in FIELD_NAMES:
        name = field.group(1).lower()
        if not followed:
            raise QueryError(f"'{name}:' must be followed directly by a word, phrase or group", start)
        tokens.append(_Token("FIELD", start, name))
        start += field.end()
        run = run[field.end() :]
        if not run:
            return i, True
        if run.startswith("-"):
            raise QueryError(f"put the '-' before the field: -{name}:word", start)
    elif followed:
        raise QueryError(f"unknown field '{field.group(1)}:' (fields are title:, abstract:, author:, category:)", start)
    tokens.append(_Token(run if run in ("OR", "AND") else "WORD", start, "" if run in ("OR", "AND") else run))
    return i, False


# ---------------------------------------------------------------- parser


def _words(chunk: str, position: int) -> list[Word]:
    """The words of one space-free chunk; a trailing "*" makes its last word a prefix."""
    prefix = chunk.endswith("*")
    body = chunk[:-1] if prefix else chunk
    star = body.find("*")
    if star >= 0:
        raise QueryError("'*' may only end a word", position + star)
    found = [Word(joined(parts), tuple(part.text for part in parts)) for parts in compounds(body)]
    if not found:
        what = "'*' must follow a word" if prefix and not body else f"'{chunk}' has no letters or digits"
        raise QueryError(what, position)
    if prefix:
        last = found[-1]
        if len(last.text) < MIN_PREFIX_LENGTH:
            raise QueryError(f"a prefix needs at least {MIN_PREFIX_LENGTH} letters before '*'", position)
        found[-1] = Word(last.text, last.parts, prefix=True)
    return found


class _Parser:
    def __init__(self, tokens: list[_Token], limits: Limits = Limits()):
        self.tokens = tokens
        self.i = 0
        self.limits = limits
        self.words = self.prefixes = 0

    def counted(self, words: list[Word]) -> tuple[Word, ...]:
        """The words of a term, counted against the limits as they come: a topic far past them
        is refused after its first words, not after parsing all of it."""
        self.words += sum(len(word.parts) for word in words)
        self.prefixes += sum(word.prefix for word in words)
        limits = self.limits
        if limits.words is not None and self.words > limits.words:
            raise QueryError(f"has more than the {limits.words} words a topic may have: split it into several topics")
        if limits.prefixes is not None and self.prefixes > limits.prefixes:
            raise QueryError(f"has more than the {limits.prefixes} prefixes (word*) a topic may have")
        return tuple(words)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Node:
        node = self.parse_or(DEFAULT_FIELDS)
        token = self.peek()
        if token.kind == ")":
            raise QueryError("')' has no matching '('", token.position)
        if token.kind != "END":  # pragma: no cover - parse_or consumes everything else
            raise QueryError("unexpected text", token.position)
        return node

    def parse_or(self, fields: frozenset[int]) -> Node:
        first = self.peek()
        if first.kind == "OR":
            raise QueryError("OR needs a term before it", first.position)
        branches = [self.parse_and(fields)]
        while self.peek().kind == "OR":
            operator = self.take()
            if self.peek().kind in ("OR", "END", ")", "AND"):
                raise QueryError("OR needs a term after it", operator.position)
            branches.append(self.parse_and(fields))
        return branches[0] if len(branches) == 1 else Or(tuple(branches))

    def parse_and(self, fields: frozenset[int]) -> Node:
        children = []
        while self.peek().kind not in ("OR", "END", ")"):
            token = self.peek()
            if token.kind == "AND":
                self.take()
                if not children or self.peek().kind in ("OR", "END", ")", "AND"):
                    raise QueryError("AND needs a term on each side", token.position)
                continue
            children.append(self.parse_unary(fields))
        if not children:
            token = self.peek()
            if token.kind == ")":
                raise QueryError("')' has no matching '('", token.position)
            raise QueryError("expected a word, phrase or group", token.position)
        children = _group_bare_words(children)
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_unary(self, fields: frozenset[int]) -> Node:
        token = self.peek()
        if token.kind == "NOT":
            self.take()
            following = self.peek()
            if following.kind == "NOT":
                raise QueryError("'-' twice", following.position)
            if following.kind not in ("WORD", "PHRASE", "(", "FIELD"):
                raise QueryError("'-' must be followed directly by a word, phrase or group", token.position)
            return Not(self.parse_primary(fields))
        return self.parse_primary(fields)

    def parse_primary(self, fields: frozenset[int]) -> Node:
        token = self.take()
        if token.kind == "FIELD":
            following = self.peek()
            if following.kind not in ("WORD", "PHRASE", "("):
                raise QueryError(f"'{token.text}:' must be followed directly by a word, phrase or group", token.position)
            return self.parse_primary(frozenset({FIELD_NAMES[token.text]}))
        if token.kind == "(":
            if self.peek().kind == ")":
                raise QueryError("empty parentheses", token.position)
            if self.peek().kind == "END":
                raise QueryError("unclosed parenthesis", token.position)
            node = self.parse_or(fields)
            closing = self.take()
            if closing.kind != ")":
                raise QueryError("unclosed parenthesis", token.position)
            return node
        if token.kind == "PHRASE":
            words: list[Word] = []
            offset = token.position + 1
            for chunk in re.finditer(r"\S+", token.text):
                words.extend(_words(chunk.group(), offset + chunk.start()))
            if not words:
                raise QueryError("empty phrase", token.position)
            return Term(self.counted(words), fields)
        if token.kind == "WORD":
            return Term(self.counted(_words(token.text, token.position)), fields)
        if token.kind == ")":
            raise QueryError("')' has no matching '('", token.position)
        if token.kind == "END":
            raise QueryError("expected a word, phrase or group", token.position)
        raise QueryError(f"unexpected {token.kind}", token.position)  # pragma: no cover


def _bare_word(node: Node) -> Word | None:
    if isinstance(node, Term) and len(node.words) == 1 and not node.words[0].prefix:
        return node.words[0]
    return None


def _group_bare_words(children: list[Node]) -> list[Node]:
    """Runs of neighbouring bare words in the same fields become one AllWords node."""
    grouped: list[Node] = []
    run: list[Term] = []

    def flush() -> None:
        if len(run) > 1:
            grouped.append(AllWords(tuple(term.words[0] for term in run), run[0].fields))
        else:
            grouped.extend(run)
        run.clear()

    for child in children:
        if _bare_word(child) is not None and (not run or run[0].fields == child.fields):  # type: ignore[union-attr]
            run.append(child)  # type: ignore[arg-type]
            continue
        flush()
        if _bare_word(child) is not None:
            run.append(child)  # type: ignore[arg-type]
        else:
            grouped.append(child)
    flush()
    return grouped


def glue(first: Word, second: Word) -> Word:
    """Two neighbouring words written as one: "pre" + "training" -> "pretraining"."""
    return Word(first.text + second.text, first.parts + second.parts, prefix=second.prefix)


def _includes_something(node: Node) -> bool:
    """False when a branch of the query would match by exclusions alone, i.e. nearly everything."""
    if isinstance(node, (Term, AllWords)):
        return True
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_includes_something(child) for child in node.children)
    return all(_includes_something(child) for child in node.children)


def tidy(text: str) -> str:
    return " ".join(text.split())


def _words_of(node: Node) -> Iterable[Word]:
    if isinstance(node, (Term, AllWords)):
        yield from node.words
    elif isinstance(node, Not):
        yield from _words_of(node.child)
    else:
        for child in node.children:
            yield from _words_of(child)


def parse_query(text: str, limits: Limits = Limits()) -> Query:
    """Parse one topic. Raises QueryError saying where and why when the topic is not understood,
    or asks for more than `limits` allow."""
    if not isinstance(text, str):
        raise QueryError("a topic must be text", None, repr(text))
    return _parse_query(text, limits)


@lru_cache(maxsize=16384)  # topics repeat across subscribers (an import of 100,000 has a few thousand)
def _parse_query(text: str, limits: Limits) -> Query:
    """parse_query for a string: pure, and every node frozen, so one parse serves every caller."""
    topic = tidy(text)
    if not topic:
        raise QueryError("is empty", None, topic)
    if len(topic) > limits.length:
        raise QueryError(f"is longer than {limits.length} characters", None, topic[:40] + "...")
    try:
        root = _Parser(_lex(topic), limits).parse()
    except QueryError as exc:
        raise QueryError(exc.message, exc.position, topic) from None
    if not _includes_something(root):
        raise QueryError(
            "would match nearly every paper: it (or one side of an OR) has only exclusions; add a word to look for",
            None,
            topic,
        )
    return Query(topic, root, root.canonical())


def validate_topics(topics: Iterable[str], limits: Limits = Limits()) -> list[str]:
    """The topics as they will be saved: whitespace tidied, blank ones dropped, duplicates (same
    meaning, e.g. "LLMs" and "llm") dropped after the first. Raises QueryError for the first topic
    that does not parse, so nothing is saved half-understood."""
    cleaned: list[str] = []
    seen: set[str] = set()
    words = 0
    for topic in topics:
        if not isinstance(topic, str) or not topic.strip():
            continue
        query = parse_query(topic, limits)
        if query.key not in seen:
            seen.add(query.key)
            cleaned.append(query.text)
            words += query.words
    if limits.all_words is not None and words > limits.all_words:
        raise QueryError(f"these topics have {words} words together, more than the {limits.all_words} "
                         "a subscription may have: drop or shorten some", None, "; ".join(cleaned)[:60] + "...")
    return cleaned
