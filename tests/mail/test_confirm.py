"""The confirmation email (sent by subscriptions) in the digest's look, and other named emails."""

from __future__ import annotations

import pytest

from digest.mail import render_email
from tests.mail.helpers import Elements


def test_confirm_email_lists_topics_and_the_link_escaped(settings):
    rendered = render_email(
        "confirm",
        settings=settings,
        email="ana@example.org",
        confirm_url="http://digest.test/confirm/tok",
        topics=["pretraining", "<script>alert(1)</script>"],
    )
    assert rendered.subject == "Confirm your subscription to Daily Papers Digest"
    elements = Elements(rendered.html)
    assert "http://digest.test/confirm/tok" in [a["href"] for a in elements.all("a")]
    assert "<script" not in rendered.html
    # shown as text: the reader sees the characters, the browser runs nothing
    assert "\u2022 pretraining \u2022 <script>alert(1)</script>" in elements.visible_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert all("style" in attrs for attrs in elements.all("a") + elements.all("p") + elements.all("td"))
    assert "  - pretraining\n  - <script>alert(1)</script>\n" in rendered.text
    assert "http://digest.test/confirm/tok" in rendered.text
    assert settings.postal_address in rendered.text and settings.postal_address in elements.visible_text


def test_a_missing_value_or_a_bad_link_is_a_clear_error(settings):
    with pytest.raises(TypeError, match="confirm_url"):
        render_email("confirm", settings=settings, email="a@example.org", topics=["x"])
    with pytest.raises(ValueError, match="confirm_url"):
        render_email("confirm", settings=settings, email="a@example.org", topics=["x"], confirm_url="javascript:x")
    with pytest.raises(ValueError, match="no email template"):
        render_email("../etc", settings=settings)
