"""The query language: what parses into what, and the precise message when it does not."""

from __future__ import annotations

import pytest

from digest.errors import DigestError
from digest.matching import QueryError, parse_query, validate_topics
from digest.matching.query import ABSTRACT, AUTHOR, CATEGORY, TITLE, AllWords, And, Not, Or, Term


def test_bare_words_are_all_required_and_may_be_glued():
    root = parse_query("language models").root
    assert isinstance(root, AllWords)
    assert [word.text for word in root.words] == ["language", "models"]
    assert root.fields == {TITLE, ABSTRACT}


def test_or_phrase_exclusion_group_fields_prefix():
    root = parse_query('(speech OR audio) generation -video author:"Ana Ruiz" title:robot*').root
    assert isinstance(root, And)
    group, generation, excluded, author, title = root.children
    assert isinstance(group, Or) and [c.words[0].text for c in group.children] == ["speech", "audio"]
    assert isinstance(generation, Term) and generation.words[0].text == "generation"
    assert isinstance(excluded, Not) and excluded.child.words[0].text == "video"
    assert isinstance(author, Term) and author.fields == {AUTHOR}
    assert [word.text for word in author.words] == ["ana", "ruiz"]
    assert title.fields == {TITLE} and title.words[0].prefix and title.words[0].text == "robot"


def test_field_applies_to_a_whole_group_and_exclusion_to_a_field():
    root = parse_query("category:(cs.CL OR cs.LG) -title:survey diffusion").root
    group, excluded, word = root.children
    assert all(child.fields == {CATEGORY} for child in group.children)
    assert isinstance(excluded, Not) and excluded.child.fields == {TITLE}
    assert word.fields == {TITLE, ABSTRACT}


def test_compound_words_keep_their_parts():
    (word,) = parse_query("Pre-Training").root.words
    assert word.text == "pretraining" and word.parts == ("pre", "training")


def test_lower_case_or_is_a_word_and_explicit_and_is_accepted():
    assert isinstance(parse_query("this or that").root, AllWords)
    assert parse_query("diffusion AND video").key == parse_query("diffusion video").key


def test_equivalent_spellings_share_one_key():
    assert parse_query("LLMs").key == parse_query("llm").key
    assert parse_query("Pre-Training").key == parse_query("pretraining").key
    assert parse_query("a OR b").key == parse_query("b OR a").key
    assert parse_query("naïve").key == parse_query("NAIVE").key
    assert parse_query("robot*").key != parse_query("robot").key


@pytest.mark.parametrize(
    "topic, message, column",
    [
        ("x (y", "unclosed parenthesis", 3),
        ("x y)", "')' has no matching '('", 4),
        ('"large language', "unclosed quote", 1),
        ('x ""', "empty phrase", 3),
        ("()", "empty parentheses", 1),
        ("OR x", "OR needs a term before it", 1),
        ("x OR", "OR needs a term after it", 3),
        ("x OR OR y", "OR needs a term after it", 3),
        ("AND x", "AND needs a term on each side", 1),
        ("x - y", "'-' must be followed directly by a word, phrase or group", 3),
        ("x --y", "'-' twice", 4),
        ("titel:x", "unknown field 'titel:' (fields are title:, abstract:, author:, category:)", 1),
        ("title: x", "'title:' must be followed directly by a word, phrase or group", 1),
        ("title:-x y", "put the '-' before the field: -title:word", 7),
        ("ro*bot", "'*' may only end a word", 3),
        ("x *", "'*' must follow a word", 3),
        ("x a*", "a prefix needs at least 2 letters before '*'", 3),
        ("x &", "'&' has no letters or digits", 3),
    ],
)
def test_errors_say_where_and_why(topic, message, column):
    with pytest.raises(QueryError) as caught:
        parse_query(topic)
    error = caught.value
    assert error.message == message
    assert error.position == column - 1
    assert str(error) == f"topic '{topic}': {message} at column {column}"


def test_the_documented_example_message():
    with pytest.raises(QueryError, match=r"^topic 'x \(y': unclosed parenthesis at column 3$"):
        parse_query("x (y")


@pytest.mark.parametrize("topic", ["", "   ", "\n"])
def test_empty_topics_are_refused(topic):
    with pytest.raises(QueryError, match="is empty"):
        parse_query(topic)


@pytest.mark.parametrize("topic", ["-video", '-"large language model"', "-(a OR b)", "x OR -y", "(-a -b)"])
def test_topics_made_only_of_exclusions_are_refused(topic):
    with pytest.raises(QueryError, match="only exclusions") as caught:
        parse_query(topic)
    assert caught.value.position is None


def test_exclusion_inside_a_group_with_something_to_find_is_fine():
    parse_query("diffusion (image OR -video)")


def test_long_topics_are_refused():
    with pytest.raises(QueryError, match="longer than 500 characters"):
        parse_query("word " * 101)
    parse_query(("word " * 100).strip())  # 499 characters


def test_query_error_is_a_digest_error_so_the_cli_prints_one_line():
    assert issubclass(QueryError, DigestError)


def test_validate_topics_tidies_and_drops_blanks_and_duplicates():
    cleaned = validate_topics(["  language   models ", "", "LLMs", "llm", "   ", "diffusion -video", "LLMs"])
    assert cleaned == ["language models", "LLMs", "diffusion -video"]


def test_validate_topics_names_the_first_bad_topic_and_saves_nothing():
    with pytest.raises(QueryError) as caught:
        validate_topics(["pretraining", "x (y", "-video"])
    assert str(caught.value) == "topic 'x (y': unclosed parenthesis at column 3"


def test_validate_topics_of_nothing_is_nothing():
    assert validate_topics([]) == []
