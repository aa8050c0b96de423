"""Signed link tokens: bound to one subscriber and one purpose, expiring, revocable."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner

from digest.config import load_settings
from digest.tokens import (
    FEEDBACK_ACTIONS,
    PURPOSES,
    ExpiredToken,
    InvalidToken,
    feedback_token,
    make_token,
    read_feedback_token,
    read_token,
    rotate_tokens,
)
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


def test_a_link_never_reaches_a_later_row_that_got_the_same_id(session, settings):
    """SQLite handed a deleted row's id to the next subscriber: the id alone must not be enough."""
    first = make_subscriber(session, "first@example.org")
    links = {purpose: make_token(first, purpose, settings) for purpose in PURPOSES}
    reused_id = first.id
    session.delete(first)
    session.flush()
    later = make_subscriber(session, "later@example.org", id=reused_id)
    assert later.id == reused_id
    for purpose, token in links.items():
        with pytest.raises(InvalidToken):
            read_token(session, token, purpose, settings)
    assert read_token(session, make_token(later, "settings", settings), "settings", settings) is later


def test_every_row_gets_its_own_link_secret_and_rotation_replaces_it(session):
    one, two = make_subscriber(session), make_subscriber(session)
    assert len(one.link_secret) == 16 and one.link_secret != two.link_secret
    before = one.link_secret
    rotate_tokens(one)
    assert one.link_secret != before


def legacy_token(subscriber_id: int, version: int, purpose: str, settings) -> str:
    """A link as this service made them before links carried the row's secret."""
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(settings.secret_key, salt=f"digest.{purpose}").dumps([subscriber_id, version, purpose])


def test_an_unsubscribe_link_from_before_link_secrets_still_unsubscribes_its_own_row(session, settings):
    upgraded = make_subscriber(session, token_version=3, legacy_token_version=3)
    assert read_token(session, legacy_token(upgraded.id, 3, "unsubscribe", settings), "unsubscribe", settings) is upgraded
    for purpose in ("settings", "view", "confirm"):  # only unsubscribe links outlive the upgrade
        with pytest.raises(InvalidToken):
            read_token(session, legacy_token(upgraded.id, 3, purpose, settings), purpose, settings)
    with pytest.raises(InvalidToken):  # an older version of that row's links
        read_token(session, legacy_token(upgraded.id, 2, "unsubscribe", settings), "unsubscribe", settings)
    rotate_tokens(upgraded)
    with pytest.raises(InvalidToken):  # re-subscribing ends the transition for that row
        read_token(session, legacy_token(upgraded.id, 3, "unsubscribe", settings), "unsubscribe", settings)
    newer = make_subscriber(session)  # a row made after the upgrade has no links from before
    with pytest.raises(InvalidToken):
        read_token(session, legacy_token(newer.id, 1, "unsubscribe", settings), "unsubscribe", settings)


# --------------------------------------------------------------------------- feedback links


def test_a_feedback_link_reads_back_as_its_reader_paper_and_action(session, settings):
    subscriber = make_subscriber(session)
    for action in FEEDBACK_ACTIONS:
        found, claims = read_feedback_token(session, feedback_token(subscriber, "2602.01234", action, settings), settings)
        assert found is subscriber
        assert (claims.subscriber_id, claims.paper_id, claims.action) == (subscriber.id, "2602.01234", action)


@pytest.mark.parametrize("change", ["action", "paper", "subscriber", "signature"])
def test_a_tampered_feedback_link_is_refused(session, settings, change):
    subscriber, other = make_subscriber(session), make_subscriber(session)
    sid, action, paper, signature = feedback_token(subscriber, "2602.01234", "more", settings).split(".")
    forged = {
        "action": [sid, "less", paper, signature],
        "paper": [sid, action, feedback_token(subscriber, "2602.09999", "more", settings).split(".")[2], signature],
        "subscriber": [str(other.id), action, paper, signature],
        "signature": [sid, action, paper, signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]],
    }[change]
    with pytest.raises(InvalidToken):
        read_feedback_token(session, ".".join(forged), settings)


def test_a_feedback_link_dies_with_its_row_and_lives_through_key_rotation(session, settings):
    subscriber = make_subscriber(session)
    token = feedback_token(subscriber, "2602.01234", "less", settings)
    rotated = settings.model_copy(update={"secret_key": "n" * 40, "secret_key_fallbacks": settings.secret_key})
    assert read_feedback_token(session, token, rotated)[0] is subscriber
    other_key = settings.model_copy(update={"secret_key": "o" * 40})
    with pytest.raises(InvalidToken):
        read_feedback_token(session, token, other_key)
    rotate_tokens(subscriber)  # resubscribe, or a new row under the same id
    with pytest.raises(InvalidToken):
        read_feedback_token(session, token, settings)
    with pytest.raises(InvalidToken):
        read_feedback_token(session, make_token(subscriber, "settings", settings), settings)
