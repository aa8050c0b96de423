"""Topic matching: query parser, normaliser, per-edition index, ranking and explanations.

    index = EditionIndex.build(papers)                  # once per edition
    rank(index, ["pretraining", "diffusion -video"])    # one subscriber's digest
    match_subscribers(index, {subscriber_id: topics})   # everyone, each distinct topic once
"""

from digest.matching.index import EditionIndex
from digest.matching.query import Query, QueryError, parse_query, validate_topics
from digest.matching.rank import match_subscribers, rank
from digest.matching.results import Match

__all__ = [
    "EditionIndex",
    "Match",
    "Query",
    "QueryError",
    "match_subscribers",
    "parse_query",
    "rank",
    "validate_topics",
]
