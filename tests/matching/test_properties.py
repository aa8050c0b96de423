"""Properties over generated spellings and arbitrary text (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest.matching import EditionIndex, QueryError, parse_query, rank
from digest.matching.normalize import NOT_PLURAL
from tests.matching.helpers import paper

# Words, not operators: "or" and "and" upper-cased are the query language's OR and AND, so a
# compound spelled "OR aa" is a query about something else (docs/query-language.md).
part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8).filter(lambda w: w not in ("or", "and"))
JOINERS = ["-", "\u2013", "/", " ", ""]
ACCENTS = {"a": "àâá", "e": "éèëê", "i": "ïî", "o": "öô", "u": "üû", "n": "ñ", "c": "ç"}


def matches(title: str, query: str) -> bool:
    index = EditionIndex.build([paper(title=f"We study {title} in practice", abstract="")])
    return bool(rank(index, [query]))


@st.composite
def cased(draw, word: str) -> str:
    style = draw(st.sampled_from(["lower", "upper", "title"]))
    return {"lower": word.lower(), "upper": word.upper(), "title": word.title()}[style]


@given(first=part, second=part, in_paper=st.sampled_from(JOINERS), in_query=st.sampled_from(JOINERS),
       data=st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_compound_spellings_match_each_other(first, second, in_paper, in_query, data):
    """pre-training = pre training = pretraining = pre–training = pre/training, in any case."""
    written = data.draw(cased(first)) + in_paper + data.draw(cased(second))
    asked = data.draw(cased(first)) + in_query + data.draw(cased(second))
    for query in (asked, f'"{asked}"'):
        assert matches(written, query), (written, query)


def plural(word: str) -> str:
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10), data=st.data())
@settings(max_examples=300)
def test_singular_and_plural_match_each_other(word, data):
    # A singular that already ends in "s" ("lens") reads as a plural: only listed ones are known.
    assume(not word.endswith("s"))
    many = plural(word)
    assume(many not in NOT_PLURAL)  # "does" is not the plural of "doe": listed on purpose
    assert matches(data.draw(cased(many)), word), (many, word)
    assert matches(data.draw(cased(word)), many), (word, many)
    assert matches(data.draw(cased(many)), f'"{many}"')


@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=10), data=st.data())
@settings(max_examples=200)
def test_accents_and_case_fold(word, data):
    accented = "".join(data.draw(st.sampled_from(ACCENTS[ch] + ch)) if ch in ACCENTS else ch for ch in word)
    assert matches(data.draw(cased(accented)), word)
    assert matches(word, accented)


@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8),
       before=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4),
       after=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4))
@settings(max_examples=200)
def test_whole_words_only(word, before, after):
    """BERT is not in RoBERTa, train is not in constraint."""
    # The title alone: `matches` wraps it in "We study … in practice", whose own words ("in")
    # would match themselves.
    alone = EditionIndex.build([paper(title=before + word + after, abstract="")])
    assert not rank(alone, [word])
    assert matches(f"{before} {word} {after}", word)


@given(st.text(max_size=600))
@settings(max_examples=500)
def test_parser_never_crashes(text):
    try:
        query = parse_query(text)
    except QueryError as error:
        assert error.message
        assert error.position is None or 0 <= error.position <= len(text)
        assert str(error).startswith("topic '")
        return
    assert query.key


OPERATORS = st.sampled_from(['"', "(", ")", "-", "*", "OR", "AND", "title:", "author:", ":", " ", "pre", "x", "é"])


@given(st.lists(OPERATORS, max_size=25).map("".join), st.text(max_size=80))
@settings(max_examples=500)
def test_any_query_that_parses_evaluates_and_explains_itself(query_text, title):
    """Query-shaped noise: whatever parses can be run, and every highlight is a real substring."""
    try:
        parse_query(query_text)
    except QueryError:
        return
    index = EditionIndex.build([paper(title=title + " pre x é", abstract=title, authors=["Ana Ruiz"])])
    for match in rank(index, [query_text]):
        for field in ("title", "abstract"):
            text = getattr(match.paper, field)
            for start, end in match.highlights[field]:
                assert 0 <= start < end <= len(text)
        assert match.matched
