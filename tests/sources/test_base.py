"""The text cleaning every source applies at the door."""

import pytest

from digest.sources.base import clean_text, http_url_or_none, parse_datetime


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("Pre\x00Training", "PreTraining"),  # PostgreSQL refuses NUL in text; SQLite stores it
        ("a\x01b\x08c\x1bd\x7fe", "abcde"),  # other C0 controls and DEL
        ("a\x80b\x9fc", "abc"),  # C1 controls
        ("line\nbreak\ttab\r\nend\x0bvt\x0cff\x85nel", "line break tab end vt ff nel"),  # white space: one space
        ("  A   Title\n with breaks ", "A Title with breaks"),
        ("lone \ud800surrogate", "lone surrogate"),  # cannot be encoded as UTF-8
        ("Zoe\u0308 and the ﬁrst", "Zoë and the ﬁrst"),  # NFC, ligatures kept
        ("<b>kept as text</b> &amp;", "<b>kept as text</b> &amp;"),
        (None, ""),
    ],
)
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_a_link_must_be_one_http_url():
    assert http_url_or_none(" https://github.com/x/y ") == "https://github.com/x/y"
    for bad in ("javascript:alert(1)", "https://github.com/x/\x00y", "https://a b", 7, None, ["https://x"]):
        assert http_url_or_none(bad) is None


def test_a_date_outside_what_the_store_can_hold_is_no_date():
    assert parse_datetime("2026-11-25T17:59:00.000Z").isoformat() == "2026-11-25T17:59:00+00:00"
    assert parse_datetime("0001-01-01T00:00:00+05:00") is None
    assert parse_datetime("nonsense") is None
