"""What matching hands to rendering and delivery: one ranked paper for one subscriber."""

from __future__ import annotations

from dataclasses import dataclass, field

from digest.models import Paper

Span = tuple[int, int]  # [start, end) character offsets into the paper's original text


@dataclass(frozen=True, slots=True)  # slots: a hundred thousand digests hold many of them
class Match:
    paper: Paper
    score: float
    topics: tuple[str, ...]  # the subscriber's topics that matched, in the subscriber's order
    matched: tuple[str, ...]  # the exact words as they appear in the paper (for highlighting)
    # Where those words stand in the original title and abstract, for highlighting.
    highlights: dict[str, tuple[Span, ...]] = field(default_factory=dict)  # keys "title", "abstract"
    # The title of a paper the reader liked that this one resembles (digest.relevance): set on a
    # suggestion no topic matched ("Like: <title>"), and on a match the reader's model moved up.
    resembles: str | None = None

    @property
    def paper_id(self) -> str:
        return self.paper.id
