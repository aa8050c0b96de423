"""Signed link tokens: bound to one subscriber and one purpose, expiring, revocable."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner

from digest.config import load_settings
from digest.tokens import PURPOSES, ExpiredToken, InvalidToken, make_token, read_token, rotate_tokens
from tests.factories import make_subscriber


def test_a_token_reads_back_as_its_subscriber_for_every_purpose(session, settings):
    subscriber = make_subscriber(session)
    for purpose in PURPOSES:
        assert read_token(session, make_token(subscriber, purpose, settings), purpose, settings) is subscriber


def test_a_token_for_one_purpose_is_refused_for_another(session, settings):
    subscriber = make_subscriber(session)
    for made in PURPOSES:
        token = make_token(subscriber, made, settings)
        for used in set(PURPOSES) - {made}:
            with pytest.raises(InvalidToken):
                read_token(session, token, used, settings)


def test_a_tampered_token_is_refused(session, settings):
    subscriber = make_subscriber(session)
    token = make_token(subscriber, "settings", settings)
    payload, stamp, signature = token.split(".")
    other = make_subscriber(session)
    forged_payload = make_token(other, "settings", settings).split(".")[0]
    # Change a character in the middle of the signature: the last base64 character may carry
    # only padding bits, and changing it would not change the signature at all.
    middle = len(signature) // 2
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    for bad in (f"{forged_payload}.{stamp}.{signature}", f"{payload}.{stamp}.{flipped}", "", "a.b.c"):
        with pytest.raises(InvalidToken):
            read_token(session, bad, "settings", settings)


def test_a_token_signed_with_another_key_is_refused(session, settings):
    subscriber = make_subscriber(session)
    other = load_settings(database_url=settings.database_url, secret_key="some-other-server-s-secret-key-0123456789")
    with pytest.raises(InvalidToken):
        read_token(session, make_token(subscriber, "settings", other), "settings", settings)


def test_confirmation_tokens_expire_after_seven_days_and_others_do_not(session, settings, monkeypatch):
    subscriber = make_subscriber(session)
    long_ago = int(time.time()) - 7 * 86400 - 60
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
    old_confirm = make_token(subscriber, "confirm", settings)
    old_settings = make_token(subscriber, "settings", settings)
    monkeypatch.undo()
    with pytest.raises(ExpiredToken):
        read_token(session, old_confirm, "confirm", settings)
    assert read_token(session, old_settings, "settings", settings) is subscriber
    with pytest.raises(ExpiredToken):
        read_token(session, old_settings, "settings", settings, max_age=timedelta(days=1))


def test_rotating_the_version_invalidates_every_earlier_token(session, settings):
    subscriber = make_subscriber(session)
    before = {p: make_token(subscriber, p, settings) for p in PURPOSES}
    rotate_tokens(subscriber)
    session.flush()
    for purpose, token in before.items():
        with pytest.raises(InvalidToken):
            read_token(session, token, purpose, settings)
    assert read_token(session, make_token(subscriber, "settings", settings), "settings", settings) is subscriber


def test_a_token_of_a_deleted_subscriber_is_refused(session, settings):
    subscriber = make_subscriber(session)
    token = make_token(subscriber, "unsubscribe", settings)
    session.delete(subscriber)
    session.flush()
    with pytest.raises(InvalidToken):
        read_token(session, token, "unsubscribe", settings)


def test_invalid_token_is_a_digest_error_with_one_line():
    from digest.errors import DigestError

    assert issubclass(InvalidToken, DigestError) and issubclass(ExpiredToken, InvalidToken)


def test_after_a_key_rotation_old_links_verify_and_new_ones_use_the_new_key(session, settings):
    subscriber = make_subscriber(session)
    old_link = make_token(subscriber, "settings", settings)
    rotated = load_settings(database_url=settings.database_url, base_url=settings.base_url,
                            secret_key="the-new-secret-key-0123456789abcdef", secret_key_fallbacks=settings.secret_key)
    assert read_token(session, old_link, "settings", rotated) is subscriber
    new_link = make_token(subscriber, "settings", rotated)
    assert new_link != old_link and read_token(session, new_link, "settings", rotated) is subscriber
    with pytest.raises(InvalidToken):  # the old key alone does not know the new one
        read_token(session, new_link, "settings", settings)
    retired = load_settings(database_url=settings.database_url, base_url=settings.base_url,
                            secret_key="the-new-secret-key-0123456789abcdef")
    with pytest.raises(InvalidToken):  # once the old key leaves the fallbacks, its links are dead
        read_token(session, old_link, "settings", retired)
