"""The live preview's ranking (matching.preview) is the digest's: same papers, scores, topics,
order and total as rank, for any topics; it keeps nothing in the edition's caches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.matching import EditionIndex, PreviewTimeout, match_subscribers, preview
from tests.matching.helpers import paper, sample_papers

TOPICS = [
    "pretraining", "diffusion -video", "robot*", "LLMs", "large language model", "video", "reasoning", "agents",
    "benchmark", "no such word anywhere", "speech OR audio", '"in-context learning"', "title:diffusion",
    "abstract:(scaling OR efficient) -video", "pre training", "pretrain*", "multi*", "co* OR re*", "author:li",
    "category:cs.CL", "(speech OR audio) generation", '"masked language model*"', "zero-shot -title:benchmark*",
    "language models", "text-to-image", "reinforcement learning", "tokeni*", "mixture of experts", "ab* cd*",
]
INDEX = EditionIndex.build(sample_papers())


def as_digest(topics, limit):
    found = match_subscribers(INDEX, {1: topics}, limit=limit).get(1)
    return ([(m.paper.id, m.score, m.topics) for m in found], found.total) if found is not None else ([], 0)


@settings(max_examples=300, deadline=None)
@given(topics=st.lists(st.sampled_from(TOPICS), min_size=1, max_size=8, unique=True),
       limit=st.integers(min_value=0, max_value=60))
def test_the_preview_ranks_exactly_as_the_digest(topics, limit):
    shown = preview(INDEX.overlay(), topics, limit)
    assert ([(m.paper.id, m.score, m.topics) for m in shown], shown.total) == as_digest(topics, limit)


def test_a_preview_keeps_nothing_in_the_editions_caches_and_reads_what_digests_left():
    index = EditionIndex.build(sample_papers())
    match_subscribers(index, {1: ["pretraining"]})  # a digest evaluated this topic
    sizes = [len(index.topic_cache), len(index.query_cache), len(index._words), len(index._terms)]
    shown = preview(index.overlay(), ["pretraining", "co* OR re*", "multi*", '"language model"'], 50)
    assert shown.total > 0
    assert [len(index.topic_cache), len(index.query_cache), len(index._words), len(index._terms)] == sizes


def test_past_its_budget_a_preview_stops():
    with pytest.raises(PreviewTimeout):
        preview(INDEX.overlay(), ["pretraining", "agents"], 10, budget=-1.0)
    assert preview(INDEX.overlay(), ["pretraining", "agents"], 10, budget=10.0).total > 0


def test_a_prefix_stands_for_at_most_its_bound_of_words():
    from digest.matching.index import MAX_PREFIX_EXPANSION

    words = [f"zz{n:04d}" for n in range(MAX_PREFIX_EXPANSION + 20)]
    index = EditionIndex.build([paper(id=f"2611.{n:05d}", title=word) for n, word in enumerate(words)])
    shown = preview(index.overlay(), ["zz*"], 1000)
    # The first words in alphabetical order, as a search engine's max_expansions.
    assert sorted(m.paper.title for m in shown) == words[:MAX_PREFIX_EXPANSION]
    assert preview(index.overlay(), [words[-1][:-1] + "*"], 10).total == 10  # a narrower prefix finds the rest
