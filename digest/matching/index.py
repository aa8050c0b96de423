"""The per-edition index: built once from the edition's papers, then asked for words and phrases.

Each field (title, abstract, authors, categories) keeps, for every folded word form, the papers it
occurs in and at which token positions. A compound such as "Pre-Training" occupies one position per
part ("pre", "training") and is also indexed glued together ("pretraining") over the same
positions, so a phrase can run through it either way. An occurrence is the pair (first, last)
of token positions packed in one int (an edition holds a few hundred thousand of them: ints cost
the collector nothing). Positions map back to character offsets for highlighting.
"""

from __future__ import annotations

import bisect
import copy
import gc
from collections import ChainMap
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from digest.matching.normalize import JOINERS, PART_PATTERN, fold, word_keys
from digest.matching.query import ABSTRACT, AUTHOR, CATEGORY, TITLE, AllWords, Term, Word, glue

Occurrence = int  # (first << POSITION_BITS) | last: first and last token position, inclusive
POSITION_BITS = 20
LAST = (1 << POSITION_BITS) - 1
FIELD_SHIFT = 2 * POSITION_BITS  # evidence: (field << FIELD_SHIFT) | occurrence
Hits = dict[int, Collection[Occurrence]]  # paper position in the edition -> occurrences
LIST_SEPARATOR = "; "  # how author and category lists are shown, and how their offsets count
_FIELDS = (TITLE, ABSTRACT, AUTHOR, CATEGORY)
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)
# A prefix stands for at most this many indexed word forms per field and edition (docs/query-language.md).
MAX_PREFIX_EXPANSION = 50
_GAP = (-1, -1)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Building an index or a hundred thousand digests makes millions of small objects that all
    stay alive and form no cycles: the cyclic collector would rescan them again and again without
    freeing one, so it waits until the work is done. Then freeze + unfreeze hands everything made
    meanwhile straight to the oldest generation (both are O(1) list splices), instead of letting
    the next young collection walk it all once more; full collections still see it as usual."""
    collecting = gc.isenabled()
    frozen_by_caller = gc.get_freeze_count() > 0  # then unfreeze would undo their freeze: skip it
    gc.disable()
    try:
        yield
    finally:
        if not frozen_by_caller:
            gc.freeze()
            gc.unfreeze()
        if collecting:
            gc.enable()


class _FieldIndex:
    __slots__ = ("postings", "_sorted")

    def __init__(self) -> None:
        self.postings: dict[str, dict[int, list[Occurrence]]] = {}
        self._sorted: list[str] | None = None

    def surfaces_for_key(self, key: str) -> list[str]:
        """The indexed word forms whose plural-folded keys include `key`: word_keys only ever
        removes "s", "es" or "ies" (for "y"), so these are the only candidates."""
        candidates = [key, key + "s", key + "es"]
        if key.endswith("y"):
            candidates.append(key[:-1] + "ies")
        postings = self.postings
        return [surface for surface in candidates if surface in postings and key in word_keys(surface)]

    def surfaces_with_prefix(self, prefix: str, limit: int = MAX_PREFIX_EXPANSION) -> list[str]:
        """The indexed word forms that begin with `prefix`, the first `limit` in alphabetical order
        (as a search engine's max_expansions): a broad prefix costs the same as a narrow one."""
        if self._sorted is None:
            self._sorted = sorted(self.postings)
        start = bisect.bisect_left(self._sorted, prefix)
        end = start
        stop = min(start + limit, len(self._sorted))
        while end < stop and self._sorted[end].startswith(prefix):
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
        # Per field and paper: start and end character offsets of each token position, flat
        # (position n at 2n and 2n + 1).
        self.offsets: dict[int, list[list[int]]] = {field: [] for field in _FIELDS}
        self.texts: dict[int, list[str]] = {field: [] for field in _FIELDS}
        with paused_gc():
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
        self._terms: dict[Term | AllWords, TermHits] = {}
        self.query_cache: dict[str, Any] = {}  # Query.key -> evaluated hits (see evaluate.py)
        self.topic_cache: dict[str, Any] = {}  # topic text -> its single-topic matches (rank.py)
        self.matches_by_key: dict[int, Any] = {}  # sort key -> single-topic Match (rank.py)
        self.topic_slots = 1 << 15  # sort keys: room for this many topics (rank.py widens it)
        self.topics_numbered = 0

    @classmethod
    def build(cls, papers: Sequence[Any]) -> EditionIndex:
        return cls(papers)

    def overlay(self) -> EditionIndex:
        """This index with caches of its own over the shared ones: it reads what the edition has
        already evaluated, and keeps what it evaluates itself. For the live preview, whose queries
        are anyone's: an edition's caches hold only what its digests asked for. Use it under the
        lock the shared index is used under, and drop it after the request."""
        view = copy.copy(self)
        for name in ("_words", "_terms", "query_cache", "topic_cache", "matches_by_key"):
            setattr(view, name, ChainMap({}, getattr(self, name)))
        return view

    def __len__(self) -> int:
        return len(self.papers)

    def _add_text(self, field: int, number: int, paper: Any) -> None:
        postings = self._fields[field].postings
        offsets: list[int] = []
        # Positions must fit in POSITION_BITS; no real title or abstract comes near a million characters.
        text = _text(paper, field)[:LAST]
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

        def add(surface: str, occurrence: Occurrence) -> None:
            by_paper = postings.get(surface)
            if by_paper is None:
                postings[surface] = {number: [occurrence]}
            else:
                found = by_paper.get(number)
                if found is None:
                    by_paper[number] = [occurrence]
                else:
                    found.append(occurrence)

        # The loop below is parts() inlined, with add() inlined for single parts: it runs for every
        # word of every paper, and an edition is indexed within the digest's time budget.
        find_parts, fold_part, extend = PART_PATTERN.finditer, fold, offsets.extend
        position = 0
        for piece, base in pieces:
            parts: list[str] | None = None  # the compound being read, once it has two parts
            last_part = ""
            compound_start = 0
            previous_end = -2
            for match in find_parts(piece):
                span = match.span()
                folded = fold_part(match.group())
                if not folded:
                    continue
                start = span[0]
                if start == previous_end + 1 and piece[previous_end] in JOINERS:
                    if parts is None:
                        parts = [last_part, folded]
                    else:
                        parts.append(folded)
                else:
                    if parts is not None:
                        add("".join(parts), (compound_start << POSITION_BITS) | (position - 1))
                        parts = None
                    compound_start = position
                last_part = folded
                previous_end = span[1]
                occurrence = (position << POSITION_BITS) | position
                by_paper = postings.get(folded)
                if by_paper is None:
                    postings[folded] = {number: [occurrence]}
                else:
                    found = by_paper.get(number)
                    if found is None:
                        by_paper[number] = [occurrence]
                    else:
                        found.append(occurrence)
                if base:
                    extend((base + start, base + span[1]))
                else:
                    extend(span)
                position += 1
            if parts is not None:
                add("".join(parts), (compound_start << POSITION_BITS) | (position - 1))
            extend(_GAP)  # an empty position: nothing is adjacent across pieces
            position += 1
        self.offsets[field].append(offsets)

    # ------------------------------------------------------------ words and phrases

    def word_hits(self, field: int, word: Word) -> Hits:
        """Where one query word occurs: its own forms, compounds glued or split ("pretraining" in
        "pre-training" and "pre training"), plurals, or any word it begins (prefix). The result may
        be the index's own postings: read it, never change it."""
        cached = self._words.get((field, word))
        if cached is not None:
            return cached
        sources = self._word_sources(field, word)
        hits = sources[0] if len(sources) == 1 else _union(sources)
        self._words[(field, word)] = hits
        return hits

    def word_papers(self, field: int, word: Word) -> Collection[int]:
        """The papers of word_hits(field, word), without merging their occurrences."""
        return _keys(self._sources(field, word))

    def _word_sources(self, field: int, word: Word) -> list[Hits]:
        """The occurrences that stand for one query word in a field, one mapping per word form."""
        index = self._fields[field]
        postings = index.postings
        sources: list[Hits] = []
        if word.prefix:
            sources.extend(postings[surface] for surface in index.surfaces_with_prefix(word.text))
            # Split as written ("pretrain*" in "pre-trained"), within the same bound for all cuts.
            room = MAX_PREFIX_EXPANSION
            for cut in range(2, len(word.text) - 1):
                left = postings.get(word.text[:cut])
                if left is not None and room > 0:
                    rights = index.surfaces_with_prefix(word.text[cut:], room)
                    room -= len(rights)
                    sources.extend(_adjacent(left, postings[right]) for right in rights)
        else:
            for key in word.keys:
                sources.extend(postings[surface] for surface in index.surfaces_for_key(key))
            # Split as written, not as plural-folded: "catnews" is "cat" + "news", not + "new".
            for cut in range(2, len(word.text) - 1):
                left = postings.get(word.text[:cut])
                if left is not None:
                    for key in word_keys(word.text[cut:]):
                        for right in index.surfaces_for_key(key):
                            sources.append(_adjacent(left, postings[right]))
            if len(word.parts) > 2:  # "text-to-image" written "text to image"
                sources.append(self._phrase(field, tuple(Word(part, (part,)) for part in word.parts)))
        return [source for source in sources if source]

    def _phrase(self, field: int, words: tuple[Word, ...]) -> Hits:
        """Occurrences of the words in order and adjacent; two neighbours may also stand glued
        ("pre training" finds "pretraining")."""
        alone_sources = [self._sources(field, word) for word in words]
        glued_sources = [
            self._sources(field, glue(words[i], words[i + 1])) if not words[i].prefix else []
            for i in range(len(words) - 1)
        ]
        # Only papers where every word occurs, alone or glued to a neighbour, can hold the phrase:
        # found from the words' papers first, so that occurrences are merged for those alone.
        alone_papers = [_keys(sources) for sources in alone_sources]
        glued_papers = [_keys(sources) for sources in glued_sources]
        candidates: set[int] | None = None
        for i, papers in enumerate(alone_papers):
            possible = set(papers)
            if i > 0:
                possible.update(glued_papers[i - 1])
            if i < len(glued_papers):
                possible.update(glued_papers[i])
            candidates = possible if candidates is None else candidates & possible
            if not candidates:
                return {}
        alone = [_union_among(sources, candidates) for sources in alone_sources]  # type: ignore[arg-type]
        glued = [_union_among(sources, candidates) for sources in glued_sources]  # type: ignore[arg-type]
        reached: dict[int, list[Hits]] = {0: []}  # words matched so far -> spans per paper
        for i in range(len(words)):
            if i not in reached:
                continue
            before = _union(reached.pop(i)) if i else None
            steps = [(1, alone[i])]
            if i < len(glued) and glued[i]:
                steps.append((2, glued[i]))
            for length, hits in steps:
                extended = _extend(before, hits, candidates)  # type: ignore[arg-type]
                if extended:
                    reached.setdefault(i + length, []).append(extended)
        return _union(reached.get(len(words), []))

    def _sources(self, field: int, word: Word) -> list[Hits]:
        """A word's occurrences as one merged mapping when already merged, else per word form."""
        merged = self._words.get((field, word))
        return [merged] if merged is not None else self._word_sources(field, word)

    def _in_fields(self, word: Word, fields: frozenset[int]) -> dict[int, Hits]:
        return {field: self.word_hits(field, word) for field in fields}

    def term_hits(self, term: Term | AllWords) -> TermHits:
        """The papers where a word, phrase or run of bare words occurs in the term's fields, and
        per field the occurrences that show it."""
        cached = self._terms.get(term)
        if cached is not None:
            return cached
        if isinstance(term, AllWords):
            result = self._all_words(term)
        elif len(term.words) == 1:
            per_field = self._in_fields(term.words[0], term.fields)
            result = TermHits(_papers_of(per_field.values()), [per_field])
        else:
            per_field = {field: self._phrase(field, term.words) for field in term.fields}
            result = TermHits(_papers_of(per_field.values()), [per_field])
        self._terms[term] = result
        return result

    def _all_words(self, term: AllWords) -> TermHits:
        words = term.words
        single = [self._in_fields(word, term.fields) for word in words]
        glued = [self._in_fields(glue(words[i], words[i + 1]), term.fields) for i in range(len(words) - 1)]
        satisfied = _satisfied([_papers_of(hits.values()) for hits in single], [_papers_of(hits.values()) for hits in glued])
        return TermHits(frozenset(satisfied), single + glued)

    def term_papers(self, term: Term | AllWords) -> tuple[Collection[int], Collection[int]]:
        """term_hits(term)'s papers, and those where its evidence holds a title occurrence (what
        makes a title match): from its words' papers alone, unless it is a phrase (which needs
        positions). What the live preview ranks with."""
        if isinstance(term, Term) and len(term.words) > 1:
            hits = self.term_hits(term)
            titled = set().union(*(per_field.get(TITLE, ()) for per_field in hits.sources))
            return hits.papers, titled & hits.papers
        fields, words = term.fields, term.words
        single = [{field: self.word_papers(field, word) for field in fields} for word in words]
        if isinstance(term, Term):
            return set().union(*single[0].values()), single[0].get(TITLE, set())
        glued = [{field: self.word_papers(field, glue(words[i], words[i + 1])) for field in fields}
                 for i in range(len(words) - 1)]
        matched = _satisfied([set().union(*papers.values()) for papers in single],
                             [set().union(*papers.values()) for papers in glued])
        titled = set().union(*(papers.get(TITLE, ()) for papers in single + glued))
        return matched, titled & matched

    # ------------------------------------------------------------ back to the paper's own text

    def span(self, field: int, paper: int, occurrence: Occurrence) -> tuple[int, int]:
        offsets = self.offsets[field][paper]
        return offsets[(occurrence >> POSITION_BITS) << 1], offsets[((occurrence & LAST) << 1) + 1]


class TermHits:
    """A term's papers, and where in them it occurs (a list of per-field hits, for evidence)."""

    __slots__ = ("papers", "sources")

    def __init__(self, papers: frozenset[int], sources: list[dict[int, Hits]]):
        self.papers = papers
        self.sources = sources

    def evidence(self, paper: int) -> list[int]:
        """Every occurrence in `paper`, as (field << FIELD_SHIFT) | occurrence."""
        return [
            (field << FIELD_SHIFT) | occurrence
            for per_field in self.sources
            for field, hits in per_field.items()
            for occurrence in hits.get(paper, ())
        ]


def _satisfied(single: list[Collection[int]], glued: list[Collection[int]]) -> set[int]:
    """Papers where bare words all occur, each alone (`single[i]`) or glued to its neighbour
    (`glued[i]`: words i and i + 1 as one)."""
    # satisfied[i]: papers where words[i:] all occur, each alone or glued to its neighbour.
    satisfied: list[set[int] | None] = [None] * (len(single) + 2)
    for i in range(len(single) - 1, -1, -1):
        rest = satisfied[i + 1]
        papers = set(single[i]) if rest is None else rest & single[i]
        if i < len(glued):
            after = satisfied[i + 2]
            papers |= glued[i] if after is None else after & glued[i]
        satisfied[i] = papers
    return satisfied[0] or set()


def _papers_of(hits: Iterable[Hits]) -> frozenset[int]:
    papers: set[int] = set()
    for found in hits:
        papers.update(found)
    return frozenset(papers)


def _keys(sources: list[Hits]) -> Collection[int]:
    if len(sources) == 1:
        return sources[0].keys()
    return set().union(*sources)


def _union_among(sources: list[Hits], papers: set[int]) -> Hits:
    """_union(sources), for these papers only."""
    if len(sources) == 1:
        source = sources[0]
        return {paper: source[paper] for paper in papers.intersection(source)}
    merged: dict[int, set[Occurrence]] = {}
    for source in sources:
        for paper in papers.intersection(source):
            found = merged.get(paper)
            if found is None:
                merged[paper] = set(source[paper])
            else:
                found.update(source[paper])
    return merged  # type: ignore[return-value]


def _union(sources: list[Hits]) -> Hits:
    if not sources:
        return {}
    if len(sources) == 1:
        return sources[0]
    merged: dict[int, set[Occurrence]] = {}
    for source in sources:
        for paper, occurrences in source.items():
            found = merged.get(paper)
            if found is None:
                merged[paper] = set(occurrences)
            else:
                found.update(occurrences)
    return merged  # type: ignore[return-value]


def _adjacent(left: Hits, right: Hits) -> Hits:
    """Occurrences of `left` immediately followed by `right`, as one occurrence."""
    found: dict[int, list[Occurrence]] = {}
    for paper in left.keys() & right.keys():
        starts: dict[int, list[int]] = {}
        for occurrence in right[paper]:
            starts.setdefault(occurrence >> POSITION_BITS, []).append(occurrence & LAST)
        pairs = [
            (occurrence & ~LAST) | end
            for occurrence in left[paper]
            for end in starts.get((occurrence & LAST) + 1, ())
        ]
        if pairs:
            found[paper] = pairs
    return found


def _extend(spans: Hits | None, following: Hits, candidates: set[int]) -> Hits:
    """Spans continued by an occurrence that starts right after them (None: nothing yet)."""
    if spans is None:
        return {paper: following[paper] for paper in candidates.intersection(following)}
    extended: Hits = {}
    for paper in spans.keys() & following.keys():
        starts: dict[int, list[int]] = {}
        for occurrence in following[paper]:
            starts.setdefault(occurrence >> POSITION_BITS, []).append(occurrence & LAST)
        continued = {(span & ~LAST) | last for span in spans[paper] for last in starts.get((span & LAST) + 1, ())}
        if continued:
            extended[paper] = continued
    return extended
