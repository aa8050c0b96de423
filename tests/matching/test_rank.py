"""Ranking, explanations and many subscribers at once."""

from __future__ import annotations

import importlib
import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.matching import EditionIndex, Match, match_subscribers, rank
from tests.matching.helpers import paper, sample_papers


def ids(matches: list[Match]) -> list[str]:
    return [match.paper.id for match in matches]


def day(n: int) -> datetime:
    return datetime(2026, 11, n, tzinfo=timezone.utc)


def test_title_beats_abstract_then_more_topics_then_upvotes_then_recency_then_id():
    papers = [
        paper(id="a-abstract-old", title="Other", abstract="About diffusion.", upvotes=5, published_at=day(1)),
        paper(id="b-title", title="Diffusion for all", abstract="", upvotes=0, published_at=day(1)),
        paper(id="c-abstract-new", title="Other", abstract="About diffusion.", upvotes=5, published_at=day(9)),
        paper(id="d-abstract-popular", title="Other", abstract="About diffusion.", upvotes=50, published_at=day(1)),
        paper(id="e-two-topics", title="Other", abstract="Diffusion and robots.", upvotes=0, published_at=day(1)),
        paper(id="f-same-as-a", title="Other", abstract="About diffusion.", upvotes=5, published_at=day(1)),
        paper(id="g-nothing", title="Robotic arms", abstract="Arms.", upvotes=99),
    ]
    index = EditionIndex.build(papers)
    matches = rank(index, ["diffusion", "robots"])
    assert ids(matches) == [
        "b-title",  # 2: one topic, in the title
        "e-two-topics",  # 2: two topics in the abstract; same upvotes and date as b: then by id
        "d-abstract-popular",  # 1, most upvotes
        "c-abstract-new",  # 1, newer
        "a-abstract-old",  # 1, same as f in every way but the id
        "f-same-as-a",
    ]
    assert [match.score for match in matches] == [2.0, 2.0, 1.0, 1.0, 1.0, 1.0]


def test_title_match_in_two_topics_outranks_one():
    papers = [
        paper(id="one", title="Diffusion", upvotes=100),
        paper(id="two", title="Diffusion robots", upvotes=0),
    ]
    matches = rank(EditionIndex.build(papers), ["robots", "diffusion"])
    assert ids(matches) == ["two", "one"]
    assert matches[0].score == 4.0
    assert matches[0].topics == ("robots", "diffusion")  # the subscriber's order
    assert matches[1].topics == ("diffusion",)


def test_order_is_stable_across_builds_and_input_order():
    papers = sample_papers()
    first = ids(rank(EditionIndex.build(papers), ["pretraining", "diffusion"]))
    second = ids(rank(EditionIndex.build(list(reversed(papers))), ["pretraining", "diffusion"]))
    assert first == second


def test_explanation_lists_words_as_spelled_with_exact_offsets():
    title = "Balancing Continuous Pre-Training and Instruction Fine-Tuning"
    abstract = "We study pretraining. Pre training helps; Pretrained models are naïve."
    index = EditionIndex.build([paper(title=title, abstract=abstract)])
    (match,) = rank(index, ["pretraining", "naive"])
    assert match.matched == ("Pre-Training", "pretraining", "Pre training", "naïve")
    assert [title[s:e] for s, e in match.highlights["title"]] == ["Pre-Training"]
    assert [abstract[s:e] for s, e in match.highlights["abstract"]] == ["pretraining", "Pre training", "naïve"]
    assert match.topics == ("pretraining", "naive")


def test_prefix_explains_with_the_inflections_it_found():
    abstract = "A pretrained encoder, pre-trained twice; pretraining matters. Not a pretext."
    (match,) = rank(EditionIndex.build([paper(abstract=abstract)]), ["pretrain*"])
    assert match.matched == ("pretrained", "pre-trained", "pretraining")


def test_exclusions_are_never_highlighted():
    (match,) = rank(EditionIndex.build([paper(title="Diffusion", abstract="No video here.")]), ["diffusion -audio"])
    assert match.matched == ("Diffusion",)


def test_author_and_category_matches_are_explained_but_not_highlighted_in_text():
    item = paper(title="T", abstract="A", authors=["Ana Ruiz", "Bo Li"], categories=["cs.CL"])
    (match,) = rank(EditionIndex.build([item]), ['author:"Ana Ruiz"', "category:cs.CL"])
    assert match.matched == ("Ana Ruiz", "cs.CL")
    assert match.highlights == {"title": (), "abstract": ()}
    assert match.score == 2.0


def test_a_phrase_never_runs_from_one_author_into_the_next():
    item = paper(authors=["Ana Ruiz", "Bo Li"])
    assert rank(EditionIndex.build([item]), ['author:"Ruiz Bo"']) == []
    assert rank(EditionIndex.build([item]), ["author:ruiz author:bo"])


def test_papers_with_empty_abstract_no_authors_or_missing_fields_are_fine():
    papers = [
        paper(id="1", title="Diffusion", abstract="", authors=[], categories=[]),
        paper(id="2", title="Diffusion", abstract=None, authors=None, categories=None, published_at=None),
        paper(id="3", title="", abstract="", authors=[]),
    ]
    index = EditionIndex.build(papers)
    assert ids(rank(index, ["diffusion"])) == ["1", "2"]  # recency: a missing date comes last
    assert rank(index, ["author:ruiz"]) == []


def test_an_empty_edition_matches_nothing():
    index = EditionIndex.build([])
    assert rank(index, ["diffusion"]) == []
    assert match_subscribers(index, {1: ["diffusion"]}) == {}


def test_limit():
    index = EditionIndex.build(sample_papers())
    assert len(rank(index, ["pretraining"], limit=3)) == 3
    assert ids(rank(index, ["pretraining"], limit=3)) == ids(rank(index, ["pretraining"]))[:3]


def test_match_subscribers_equals_rank_for_each_and_leaves_out_the_unmatched():
    index = EditionIndex.build(sample_papers())
    topics = {
        1: ["pretraining"],
        2: ["diffusion -video", "robot*", "pretraining"],
        3: ["no such word anywhere"],
        4: ["robot*", "diffusion -video"],
        5: ["LLMs", "llm", "large language model"],
        6: [],
    }
    digests = match_subscribers(index, topics)
    assert set(digests) == {1, 2, 4, 5}
    fresh = EditionIndex.build(sample_papers())
    for subscriber, matches in digests.items():
        expected = rank(fresh, topics[subscriber])
        assert [(m.paper.id, m.score, m.topics, m.matched, m.highlights) for m in matches] == [
            (m.paper.id, m.score, m.topics, m.matched, m.highlights) for m in expected
        ]


def test_each_distinct_query_is_evaluated_once_per_edition(monkeypatch):
    ranking = importlib.import_module("digest.matching.rank")  # the module, not the function
    evaluated = []
    real = ranking.evaluate
    monkeypatch.setattr(ranking, "evaluate", lambda index, query: evaluated.append(query.text) or real(index, query))
    index = EditionIndex.build(sample_papers())
    match_subscribers(index, {n: ["pretraining", "diffusion", "robot*"][: 1 + n % 3] for n in range(300)})
    assert sorted(evaluated) == ["diffusion", "pretraining", "robot*"]


def test_a_caller_changing_a_digest_does_not_change_anothers():
    index = EditionIndex.build(sample_papers())
    digests = match_subscribers(index, {1: ["robot*"], 2: ["robot*"]})
    digests[1].clear()
    assert len(digests[2]) == 5
    assert len(rank(index, ["robot*"])) == 5


def test_a_stored_topic_that_no_longer_parses_is_skipped_and_logged(caplog):
    index = EditionIndex.build(sample_papers())
    with caplog.at_level(logging.WARNING, logger="digest.matching.rank"):
        digests = match_subscribers(index, {1: ["x (y", "robot*"], 2: ["x (y"]})
    assert set(digests) == {1}
    assert len(digests[1]) == 5
    assert "topic 'x (y': unclosed parenthesis at column 3" in caplog.text


@pytest.mark.parametrize("topics", [["robot*", "robot*"], ["robot*"]])
def test_a_topic_listed_twice_counts_once(topics):
    matches = rank(EditionIndex.build(sample_papers()), topics)
    assert {match.topics for match in matches} == {("robot*",)}


def test_keys_are_renumbered_when_an_edition_has_more_topics_than_slots():
    topics = {n: topics for n, topics in enumerate(
        [["pretraining", "diffusion"], ["robot*", "LLMs", "BERT"], ["multimodal", "pretraining"], ["speech"]] * 3
    )}
    roomy = EditionIndex.build(sample_papers())
    cramped = EditionIndex.build(sample_papers())
    cramped.topic_slots = 2  # forces two widenings on the way
    expected = match_subscribers(roomy, topics)
    assert cramped.topic_slots == 2
    got = match_subscribers(cramped, topics)
    assert cramped.topic_slots > 2
    assert {s: [(m.paper.id, m.score, m.topics) for m in ms] for s, ms in got.items()} == {
        s: [(m.paper.id, m.score, m.topics) for m in ms] for s, ms in expected.items()
    }


def test_matching_leaves_the_garbage_collector_as_it_found_it():
    import gc

    assert gc.isenabled()
    match_subscribers(EditionIndex.build(sample_papers()), {1: ["pretraining"]})
    assert gc.isenabled()
    gc.disable()
    try:
        rank(EditionIndex.build(sample_papers()), ["pretraining"])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_highlights_of_several_topics_merge_where_they_overlap():
    abstract = "Continual pre-training of language models; training data."
    (match,) = rank(EditionIndex.build([paper(abstract=abstract)]), ["pretraining", "training", "language"])
    assert [abstract[s:e] for s, e in match.highlights["abstract"]] == ["pre-training", "language", "training"]
    assert match.matched == ("pre-training", "training", "language")
    assert match.score == 3.0


LIMIT_TOPICS = ["pretraining", "diffusion -video", "robot*", "LLMs", "llm", "large language model",
                "video", "reasoning", "agents", "benchmark", "no such word anywhere", "speech OR audio"]


@settings(max_examples=150, deadline=None)
@given(
    readers=st.lists(st.lists(st.sampled_from(LIMIT_TOPICS), max_size=5), min_size=1, max_size=8),
    limit=st.integers(min_value=0, max_value=12),
)
def test_a_limit_keeps_each_digest_s_first_papers_and_counts_them_all(readers, limit):
    index = EditionIndex.build(sample_papers())
    topics = dict(enumerate(readers))
    full = match_subscribers(index, topics)
    for limits in (limit, {reader: limit + reader % 3 for reader in topics}, lambda reader: limit + reader % 2):
        cut = match_subscribers(index, topics, limit=limits)
        assert set(cut) == set(full)
        for reader, matches in cut.items():
            n = limits if isinstance(limits, int) else (limits[reader] if isinstance(limits, dict) else limits(reader))
            assert matches.total == len(full[reader])
            assert [(m.paper.id, m.score, m.topics, m.matched, m.highlights) for m in matches] == [
                (m.paper.id, m.score, m.topics, m.matched, m.highlights) for m in full[reader][:n]
            ]
