"""What a digest says above and around its cards (subject, headline, summary, "and N more"), for
what it holds: papers that matched the reader's topics, suggestions like papers they liked, and
the day's trending papers by upvotes (a reader without topics, or mixed in)."""

from __future__ import annotations

from collections.abc import Sequence

from digest.mail.text import matched_topics, one_line, topic_phrase
from digest.matching.results import Match


class DigestWording:
    """The words above and around the cards, for what this digest holds: papers that matched the
    reader's topics, suggestions like papers they liked, and (for a reader without topics, or
    mixed in) the day's trending papers by upvotes."""

    def __init__(self, topics: Sequence[str], shown: Sequence[Match], total: int) -> None:
        self.topics, self.shown, self.total = topics, shown, total
        self.matched = sum(1 for m in shown if m.topics)
        self.suggested = sum(1 for m in shown if not m.topics and m.resembles is not None)
        self.trending = len(shown) - self.matched - self.suggested

    @staticmethod
    def _papers(n: int) -> str:
        return f"{n} new paper{'s' if n != 1 else ''}"

    def subject_lead(self) -> str:
        if not self.topics:
            return f"Today's {len(self.shown)} trending paper{'s' if len(self.shown) != 1 else ''}"
        if not self.matched:
            return f"{self._papers(self.total)} you may like"
        lead = f"{self._papers(self.total)} on {topic_phrase(matched_topics(self.topics, self.shown))}"
        return lead + (" and suggestions" if self.suggested else "")

    def headline(self) -> str:
        if not self.topics:
            return f"Today's {len(self.shown)} trending paper{'s' if len(self.shown) != 1 else ''}"
        if not self.matched:
            return f"{self._papers(self.total)} you may like"
        if self.suggested or self.trending:
            return f"{self._papers(self.total)} picked for you"
        return f"{self._papers(self.total)} matched your topics"

    def summary(self) -> str:
        shown, total = self.shown, self.total
        if not self.topics and not self.suggested:
            best = "The most upvoted on Hugging Face Daily Papers, most first."
            return f"{best} The top {len(shown)} of {total}." if total > len(shown) else best
        counts: dict[str, int] = {}
        for match in shown:
            for topic in match.topics:
                counts[topic] = counts.get(topic, 0) + 1
        per_topic = ", ".join(f"{one_line(t)} ({n})" for t, n in counts.items())
        extra = []
        if self.suggested:
            extra.append(f"{self.suggested} suggestion{'s' if self.suggested != 1 else ''} like papers you liked")
        if self.trending:
            extra.append(f"{self.trending} trending")
        if total > len(shown):
            # The counts are of the papers in this email, and must not read as counts of all matches.
            best = f"The best {len(shown)} of {total}, ranked."
            inside = ", ".join(([per_topic] if per_topic else []) + extra)
            return f"{best} In this email: {inside}." if inside else best
        said = "Ranked, best first." + (f" Matched: {per_topic}." if per_topic else "")
        return said + (f" Also: {', '.join(extra)}." if extra else "")

    def more_phrase(self, more: int) -> str:
        if not self.topics:
            return f"and {more} more paper{'s' if more != 1 else ''} today, by upvotes."
        if self.suggested or self.trending or not self.matched:
            return f"and {more} more for you today."
        return f"and {more} more matched your topics today."
