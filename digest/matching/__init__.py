"""Topic matching: query parser, normaliser, per-edition index, ranking and explanations."""

from digest.matching.results import Match

__all__ = ["Match"]
