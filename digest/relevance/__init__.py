"""A reader's ranking learned from their marks: features of a paper's text, a per-reader model,
and the one function that turns a reader's topic matches into the list an email shows.

    features = EditionFeatures.build(papers)            # once per edition
    model = fit(liked, disliked, vectors)               # once per (reader, feedback_version)
    shown = rerank(matches, total, features, model, learn=True, suggest=True, limit=10)
    shown = trending(papers, limit)                     # a reader with no topics

Pure: it works on the papers it is given (no SQLAlchemy session, no database).
"""

from digest.relevance.features import EditionFeatures, FeatureCache, Window, vectorize
from digest.relevance.model import ModelCache, ReaderModel, fit, paper_key
from digest.relevance.rerank import MAX_SUGGESTIONS, left_out, left_out_reason, reason, rerank, trending

__all__ = [
    "MAX_SUGGESTIONS",
    "EditionFeatures",
    "FeatureCache",
    "ModelCache",
    "ReaderModel",
    "Window",
    "fit",
    "left_out",
    "left_out_reason",
    "paper_key",
    "reason",
    "rerank",
    "trending",
    "vectorize",
]
