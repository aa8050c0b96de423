"""Topic matching: query parser, normaliser, per-edition index, ranking and explanations.

    index = EditionIndex.build(papers)                  # once per edition
    rank(index, ["pretraining", "diffusion -video"])    # one subscriber's digest
    match_subscribers(index, {subscriber_id: topics})   # everyone, each distinct topic once
    preview(index.overlay(), topics, limit)             # titles only, for the settings page
"""

from digest.matching.index import EditionIndex
from digest.matching.preview import PreviewTimeout, preview
from digest.matching.query import SAVED_TOPIC_LIMITS, Limits, Query, QueryError, parse_query, validate_topics
from digest.matching.rank import match_subscribers, rank
from digest.matching.results import Match

__all__ = [
    "SAVED_TOPIC_LIMITS",
    "EditionIndex",
    "Limits",
    "Match",
    "PreviewTimeout",
    "Query",
    "QueryError",
    "match_subscribers",
    "parse_query",
    "preview",
    "rank",
    "validate_topics",
]
