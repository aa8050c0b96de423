"""The normaliser shared by queries and papers."""

from __future__ import annotations

import pytest

from digest.matching.normalize import compounds, fold, word_keys


@pytest.mark.parametrize(
    "raw, folded",
    [("Pre", "pre"), ("NAÏVE", "naive"), ("nai\u0308ve", "naive"), ("ﬁne", "fine"), ("ＬＬＭ", "llm"),
     ("Model's", "model"), ("model\u2019s", "model"), ("don't", "dont"), ("Straße", "strasse")],
)
def test_fold(raw, folded):
    assert fold(raw) == folded


@pytest.mark.parametrize(
    "plural, singular",
    [("models", "model"), ("llms", "llm"), ("studies", "study"), ("boxes", "box"), ("classes", "class"),
     ("caches", "cache"), ("matches", "match"), ("movies", "movie"), ("gpus", "gpu"), ("apis", "api"),
     ("lms", "lm"), ("cases", "case"), ("biases", "bias"), ("keys", "key")],
)
def test_plural_and_singular_share_a_key(plural, singular):
    assert set(word_keys(plural)) & set(word_keys(singular))


@pytest.mark.parametrize("word, other", [("news", "new"), ("class", "clas"), ("loss", "los"), ("this", "th")])
def test_words_that_only_look_plural_stay_apart(word, other):
    assert not set(word_keys(word)) & set(word_keys(other))


def test_compounds_keep_parts_and_offsets_into_the_original_text():
    text = "Naïve Pre-Training, encoder/decoder and text\u2013to\u2013image \u2014 GPT-3.5's"
    found = compounds(text)
    assert [[part.text for part in parts] for parts in found] == [
        ["naive"], ["pre", "training"], ["encoder", "decoder"], ["and"], ["text", "to", "image"], ["gpt", "3.5"],
    ]
    assert [text[parts[0].start : parts[-1].end] for parts in found] == [
        "Naïve", "Pre-Training", "encoder/decoder", "and", "text\u2013to\u2013image", "GPT-3.5's",
    ]


def test_an_em_dash_separates_words_and_a_leading_hyphen_is_not_a_joiner():
    assert [[p.text for p in parts] for parts in compounds("models\u2014and -based")] == [["models"], ["and"], ["based"]]
