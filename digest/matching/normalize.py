"""One normaliser for queries and papers, so that both sides fold spellings the same way.

Text is cut into *compounds*: word parts joined by hyphens, dashes or slashes without spaces
("Pre-Training", "encoder/decoder", "text-to-image"). Each part keeps its character offsets into
the original text, so a match can be highlighted exactly as the paper spells it.

Folding, in order: Unicode compatibility forms (NFKC), accents dropped, case folded, possessive
"'s" dropped. A compound is also known by its parts glued together ("pre-training" ->
"pretraining"), which is how "pre-training", "pre training" and "pretraining" meet. Plurals fold
through `word_keys`: a small conservative rule set, never a stemmer.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

# Combining marks are not \w in Python's re: without them "nai\u0308ve" would split in two.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Hyphen-minus, hyphen, non-breaking hyphen, figure dash, en dash, minus sign, small and
# full-width hyphen-minus, slash, full-width slash. The em dash is left out on purpose: it
# separates clauses ("models\u2014and data"), it does not build words.
JOINERS = "-\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d/\uff0f"
# A word part: letters and digits, with combining marks, inner apostrophes ("model's") and decimal
# points ("3.5") inside. Written so the common case is one greedy run.
_PART = rf"[^\W_]+(?:(?:[{_MARKS}]|['\u2019](?=[^\W_])|(?<=\d)\.(?=\d))[^\W_]*)*"
PART_PATTERN = re.compile(_PART)

# Words that end in "s" without being plurals, and whose "singular" would be another word.
NOT_PLURAL = frozenset(
    {"news", "its", "has", "was", "does", "this", "thus", "yes", "gas", "lens", "always", "perhaps",
     "whereas", "towards", "less", "plus", "chaos", "ethos", "atlas", "alias", "canvas", "bias"}
)
_ES_AFTER = ("ches", "shes", "sses", "xes", "zes", "ses")


class Part(NamedTuple):
    text: str  # folded, not plural-folded
    start: int
    end: int


@lru_cache(maxsize=200_000)
def fold(word: str) -> str:
    """Case, compatibility forms, accents and possessives: "Naïve" -> "naive", "Model's" -> "model"."""
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    folded = unicodedata.normalize("NFKC", stripped.casefold())
    folded = folded.replace("\u2019", "'")
    if folded.endswith("'s"):
        folded = folded[:-2]
    return folded.replace("'", "")


@lru_cache(maxsize=200_000)
def word_keys(word: str) -> tuple[str, ...]:
    """The forms under which a folded word is indexed and looked up; two words match when their
    keys share one. Plural rules: -ies -> -y, -es after s/x/z/ch/sh, -s; words ending in ss and a
    few known non-plurals stay as they are; short words and words ending in us or is keep both
    readings. Where the rule cannot tell ("caches" is
    cache+s, "matches" is match+es) both readings are keys, so each singular still meets it."""
    if len(word) < 3 or word[-1] != "s" or not word[-2].isalpha() or word in NOT_PLURAL:
        return (word,)
    if word.endswith("ss"):  # class, loss
        return (word,)
    if len(word) == 3 or word.endswith(("us", "is")):
        # Both readings: "LMs", "GPUs", "APIs" are plurals; "its", "corpus", "analysis" are not.
        return (word, word[:-1])
    if word.endswith("ies") and len(word) >= 5:
        return (word[:-3] + "y", word[:-1])  # studies -> study; movies -> movie
    if word.endswith(_ES_AFTER):
        return (word[:-2], word[:-1])  # boxes -> box; cases -> case
    return (word[:-1],)


def parts(text: str):
    """Every word part of a text as (folded text, start, end, joined to the part before)."""
    previous_end = -2
    for match in PART_PATTERN.finditer(text):
        start, end = match.span()
        folded = fold(match.group())
        if folded:
            attached = start == previous_end + 1 and text[previous_end] in JOINERS
            yield folded, start, end, attached
            previous_end = end


def compounds(text: str) -> list[tuple[Part, ...]]:
    """The compounds of a text, each as its folded parts with their offsets."""
    found: list[list[Part]] = []
    for folded, start, end, attached in parts(text):
        if attached:
            found[-1].append(Part(folded, start, end))
        else:
            found.append([Part(folded, start, end)])
    return [tuple(compound) for compound in found]


def joined(parts: tuple[Part, ...] | tuple[str, ...]) -> str:
    return "".join(part if isinstance(part, str) else part.text for part in parts)
