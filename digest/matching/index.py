"""The per-edition index: built once from the edition's papers, then asked for words and phrases.

Each field (title, abstract, authors, categories) keeps, for every folded word form, the papers it
occurs in and at which token positions. A compound such as "Pre-Training" occupies one position per
part ("pre", "training") and is also indexed glued together ("pretraining") over the same
positions, so a phrase can run through it either way. An occurrence is a (first, last) position
pair. Positions map back to character offsets for highlighting.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from digest.matching.normalize import compounds, joined, word_keys
from digest.matching.query import ABSTRACT, AUTHOR, CATEGORY, TITLE, AllWords, Term, Word, glue

Occurrence = tuple[int, int]  # first and last token position, inclusive
Hits = dict[int, set[Occurrence]]  # paper position in the edition -> occurrences
LIST_SEPARATOR = "; "  # how author and category lists are shown, and how their offsets count
_FIELDS = (TITLE, ABSTRACT, AUTHOR, CATEGORY)
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


class _FieldIndex:
    __slots__ = ("postings", "_key_surfaces", "_sorted")

    def __init__(self) -> None:
        self.postings: dict[str, dict[int, list[Occurrence]]] = {}
        self._key_surfaces: dict[str, list[str]] | None = None
        self._sorted: list[str] | None = None

    def add(self, surface: str, paper: int, occurrence: Occurrence) -> None:
        by_paper = self.postings.get(surface)
        if by_paper is None:
            self.postings[surface] = {paper: [occurrence]}
        elif paper in by_paper:
            by_paper[paper].append(occurrence)
        else:
            by_paper[paper] = [occurrence]

    def surfaces_for_key(self, key: str) -> list[str]:
        if self._key_surfaces is None:
            self._key_surfaces = {}
            for surface in self.postings:
                for form in word_keys(surface):
                    self._key_surfaces.setdefault(form, []).append(surface)
        return self._key_surfaces.get(key, [])

    def surfaces_with_prefix(self, prefix: str) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.postings)
        start = bisect.bisect_left(self._sorted, prefix)
        end = start
        while end < len(self._sorted) and self._sorted[end].startswith(prefix):
            end += 1
        return self._sorted[start:end]


def _text(paper: Any, field: int) -> str:
    if field == TITLE:
        return paper.title or ""
    if field == ABSTRACT:
        return paper.abstract or ""
    items = (paper.authors if field == AUTHOR else paper.categories) or []
    return LIST_SEPARATOR.join(str(item) for item in items)


class EditionIndex:
    """Papers of one edition (any objects with Paper's attributes), indexed once. Query results are
    cached on the index, so each distinct query is evaluated once per edition."""

    def __init__(self, papers: Sequence[Any]):
        self.papers = list(papers)
        self._fields = {field: _FieldIndex() for field in _FIELDS}
        # Per field and paper: the (start, end) character offsets of each token position.
        self.offsets: dict[int, list[list[tuple[int, int] | None]]] = {field: [] for field in _FIELDS}
        self.texts: dict[int, list[str]] = {field: [] for field in _FIELDS}
        for number, paper in enumerate(self.papers):
            for field in _FIELDS:
                self._add_text(field, number, paper)
        # Digest order among equal scores: upvotes, then recency, then arXiv id (stable).
        order = sorted(
            range(len(self.papers)),
            key=lambda n: (
                -(self.papers[n].upvotes or 0),
                -(self.papers[n].published_at or _OLDEST).timestamp(),
                self.papers[n].id,
            ),
        )
        self.tiebreak = [0] * len(self.papers)
        for rank, number in enumerate(order):
            self.tiebreak[number] = rank
        self._words: dict[tuple[int, Word], Hits] = {}
        self._terms: dict[Term, dict[int, tuple[tuple[int, int, int], ...]]] = {}
        self.query_cache: dict[str, Any] = {}  # Query.key -> evaluated hits (see evaluate.py)
        self.topic_cache: dict[str, Any] = {}  # topic text -> its ranked single-topic matches (rank.py)
        self.combination_cache: dict[Any, Any] = {}  # (paper, topics) -> Match (rank.py)

    @classmethod
    def build(cls, papers: Sequence[Any]) -> EditionIndex:
        return cls(papers)

    def __len__(self) -> int:
        return len(self.papers)

    def _add_text(self, field: int, number: int, paper: Any) -> None:
        index = self._fields[field]
        offsets: list[tuple[int, int] | None] = []
        text = _text(paper, field)
        self.texts[field].append(text)
        if field in (AUTHOR, CATEGORY):
            # One name at a time, with an empty position between names: a phrase never runs from
            # one author into the next.
            pieces, base = [], 0
            for item in text.split(LIST_SEPARATOR) if text else []:
                pieces.append((item, base))
                base += len(item) + len(LIST_SEPARATOR)
        else:
            pieces = [(text, 0)]
        for piece, base in pieces:
            for parts in compounds(piece):
                first = len(offsets)
                for part in parts:
                    index.add(part.text, number, (len(offsets), len(offsets)))
                    offsets.append((base + part.start, base + part.end))
                if len(parts) > 1:
                    index.add(joined(parts), number, (first, len(offsets) - 1))
            offsets.append(None)
        self.offsets[field].append(offsets)

    # ------------------------------------------------------------ words and phrases

    def word_hits(self, field: int, word: Word) -> Hits:
        """Where one query word occurs: its own forms, compounds glued or split ("pretraining" in
        "pre-training" and "pre training"), plurals, or any word it begins (prefix)."""
        cached = self._words.get((field, word))
        if cached is not None:
            return cached
        index = self._fields[field]
        hits: Hits = {}
        if word.prefix:
            for surface in index.surfaces_with_prefix(word.text):
                _merge(hits, index.postings[surface])
            for cut in range(2, len(word.text) - 1):
                left = word.text[:cut]
                if left in index.postings:
                    for right in index.surfaces_with_prefix(word.text[cut:]):
                        _adjacent(hits, index.postings[left], index.postings[right])
        else:
            for key in word.keys:
                for surface in index.surfaces_for_key(key):
                    _merge(hits, index.postings[surface])
                for cut in range(2, len(key) - 1):
                    left = key[:cut]
                    if left in index.postings:
                        for right in index.surfaces_for_key(key[cut:]):
                            _adjacent(hits, index.postings[left], index.postings[right])
            if len(word.parts) > 2:  # "text-to-image" written "text to image"
                parts = tuple(Word(part, (part,)) for part in word.parts)
                for paper, found in self._phrase(field, parts).items():
                    hits.setdefault(paper, set()).update(found)
        self._words[(field, word)] = hits
        return hits

    def _phrase(self, field: int, words: tuple[Word, ...]) -> Hits:
        """Occurrences of the words in order and adjacent; two neighbours may also stand glued
        ("pre training" finds "pretraining")."""
        reached: dict[int, Hits | None] = {0: None}  # words matched so far -> spans per paper
        for i in range(len(words)):
            if i not in reached:
                continue
            steps = [(1, words[i])]
            if i + 1 < len(words) and not words[i].prefix:
                steps.append((2, glue(words[i], words[i + 1])))
            for length, word in steps:
                extended = _extend(reached[i], self.word_hits(field, word))
                if extended:
                    target = reached.setdefault(i + length, {})
                    for paper, spans in extended.items():
                        target.setdefault(paper, set()).update(spans)  # type: ignore[union-attr]
        return reached.get(len(words)) or {}

    def _word_in_fields(self, word: Word, fields: frozenset[int]) -> dict[int, list[tuple[int, int, int]]]:
        found: dict[int, list[tuple[int, int, int]]] = {}
        for field in sorted(fields):
            for paper, occurrences in self.word_hits(field, word).items():
                found.setdefault(paper, []).extend((field, first, last) for first, last in occurrences)
        return found

    def term_hits(self, term: Term | AllWords) -> dict[int, tuple[tuple[int, int, int], ...]]:
        """Papers where a word, phrase or run of bare words occurs in the term's fields, with the
        occurrences that show it as (field, first, last)."""
        cached = self._terms.get(term)
        if cached is not None:
            return cached
        if isinstance(term, AllWords):
            collected = self._all_words(term)
        else:
            collected = {}
            for field in sorted(term.fields):
                if len(term.words) == 1:
                    hits = self.word_hits(field, term.words[0])
                else:
                    hits = self._phrase(field, term.words)
                for paper, occurrences in hits.items():
                    collected.setdefault(paper, []).extend((field, first, last) for first, last in occurrences)
        result = {paper: tuple(sorted(occurrences)) for paper, occurrences in collected.items()}
        self._terms[term] = result
        return result

    def _all_words(self, term: AllWords) -> dict[int, list[tuple[int, int, int]]]:
        words = term.words
        single = [self._word_in_fields(word, term.fields) for word in words]
        glued = [self._word_in_fields(glue(words[i], words[i + 1]), term.fields) for i in range(len(words) - 1)]
        # satisfied[i]: papers where words[i:] all occur, each alone or glued to its neighbour.
        satisfied: list[set[int] | None] = [None] * (len(words) + 2)
        for i in range(len(words) - 1, -1, -1):
            rest = satisfied[i + 1]
            papers = set(single[i]) if rest is None else rest.intersection(single[i])
            if i < len(glued):
                after = satisfied[i + 2]
                papers |= set(glued[i]) if after is None else after.intersection(glued[i])
            satisfied[i] = papers
        found: dict[int, list[tuple[int, int, int]]] = {}
        for paper in satisfied[0] or ():
            occurrences = found[paper] = []
            for hits in single + glued:
                occurrences.extend(hits.get(paper, ()))
        return found

    # ------------------------------------------------------------ back to the paper's own text

    def span(self, field: int, paper: int, first: int, last: int) -> tuple[int, int]:
        offsets = self.offsets[field][paper]
        return offsets[first][0], offsets[last][1]  # type: ignore[index]


def _merge(hits: Hits, postings: dict[int, list[Occurrence]]) -> None:
    for paper, occurrences in postings.items():
        found = hits.get(paper)
        if found is None:
            hits[paper] = set(occurrences)
        else:
            found.update(occurrences)


def _adjacent(hits: Hits, left: dict[int, list[Occurrence]], right: dict[int, list[Occurrence]]) -> None:
    """Occurrences of `left` immediately followed by `right`, as one occurrence."""
    for paper in left.keys() & right.keys():
        starts = {}
        for first, last in right[paper]:
            starts.setdefault(first, []).append(last)
        for first, last in left[paper]:
            for end in starts.get(last + 1, ()):
                hits.setdefault(paper, set()).add((first, end))


def _extend(spans: Hits | None, following: Hits) -> Hits:
    """Spans continued by an occurrence that starts right after them (None: nothing yet)."""
    if spans is None:
        return {paper: set(occurrences) for paper, occurrences in following.items()}
    extended: Hits = {}
    for paper in spans.keys() & following.keys():
        starts: dict[int, list[int]] = {}
        for first, last in following[paper]:
            starts.setdefault(first, []).append(last)
        continued = {(start, last) for start, end in spans[paper] for last in starts.get(end + 1, ())}
        if continued:
            extended[paper] = continued
    return extended
