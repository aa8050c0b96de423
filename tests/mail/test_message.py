"""The message as the SMTP server receives it: headers, encodings, CRLF, DKIM."""

from __future__ import annotations

import base64
import subprocess
from email.message import EmailMessage

import dkim
import pytest

from digest.config import load_settings
from digest.errors import ConfigError
from digest.mail import HeaderError, build_message, make_message_id, to_bytes
from digest.mail import RenderedEmail
from tests.mail.helpers import EDITION, body, parse

RENDERED = RenderedEmail(
    subject="3 new papers on pré-training, diffusion · Nov 26",
    html="<!DOCTYPE html><html><body><p style=\"color:#111\">Grüße " + "x" * 2000 + "</p></body></html>\n",
    text="Hello wörld\n" + ("a long line " * 40) + "\n\nend.\n",
)


def test_headers_of_a_digest(settings):
    message_id = make_message_id(12, EDITION, settings)
    data = to_bytes(
        build_message(RENDERED, "ana@example.org", settings, message_id=message_id, unsubscribe_url="https://digest.test/u/tok"),
        settings,
    )
    message = parse(data)
    assert message["From"] == settings.sender
    assert message["To"] == "ana@example.org"
    assert message["Subject"] == RENDERED.subject
    assert message["Date"].datetime.tzinfo is not None
    assert message["Message-ID"] == f"<digest-2026-11-26-12@{settings.sender_domain}>"
    assert message["List-Id"].endswith(f"<digest.{settings.sender_domain}>")
    assert message["List-Unsubscribe"] == "<https://digest.test/u/tok>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert body(message, "plain") == RENDERED.text
    assert body(message, "html") == RENDERED.html


def test_bytes_use_crlf_and_short_lines(settings):
    data = to_bytes(build_message(RENDERED, "a@example.org", settings, unsubscribe_url="https://d.test/u"), settings)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert data.isascii()


def test_mailto_unsubscribe_when_configured(settings):
    configured = load_settings(**{**settings.model_dump(), "unsubscribe_mailto": "unsubscribe@example.org"})
    message = parse(to_bytes(build_message(RENDERED, "a@example.org", configured, unsubscribe_url="https://d.test/u"), configured))
    assert message["List-Unsubscribe"] == "<https://d.test/u>, <mailto:unsubscribe@example.org>"


def test_no_list_unsubscribe_when_not_asked(settings):
    message = parse(to_bytes(build_message(RENDERED, "a@example.org", settings, list_unsubscribe=False), settings))
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert message["Message-ID"].endswith(f"@{settings.sender_domain}>")


@pytest.mark.parametrize(
    "to", ["a@example.org\r\nBcc: victim@example.org", "not-an-address", "a@b@c", "<a@example.org>", "a b@example.org"]
)
def test_bad_recipients_never_reach_a_header(settings, to):
    with pytest.raises(HeaderError):
        build_message(RENDERED, to, settings)


def test_header_injection_through_the_subject_is_refused(settings):
    evil = RenderedEmail("Hi\r\nBcc: victim@example.org", "<p>x</p>", "x")
    with pytest.raises(HeaderError):
        build_message(evil, "a@example.org", settings)
    with pytest.raises(HeaderError):
        build_message(RENDERED, "a@example.org", settings, unsubscribe_url="https://d.test/u>, <https://evil")
    with pytest.raises(HeaderError):
        build_message(RENDERED, "a@example.org", settings, message_id="<a@b>\r\nX: y")


def test_international_domain_is_idna_encoded(settings):
    message = parse(to_bytes(build_message(RENDERED, "ana@bücher.example", settings), settings))
    assert message["To"] == "ana@xn--bcher-kva.example"


def test_long_non_ascii_subject_round_trips(settings):
    subject = "12 new papers on " + ", ".join(["prétraînement", "diffusion", "模型", "robotics"] * 4) + " · Nov 26"
    rendered = RenderedEmail(subject, "<p>x</p>", "x\n")
    data = to_bytes(build_message(rendered, "a@example.org", settings), settings)
    assert parse(data)["Subject"] == subject
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_headers_added_after_building_are_written_too(settings):
    message = build_message(RENDERED, "a@example.org", settings)
    message["X-Campaign"] = "édition du jour"
    assert parse(to_bytes(message, settings))["X-Campaign"] == "édition du jour"


def test_a_message_built_elsewhere_is_serialised_with_crlf(settings):
    other = EmailMessage()
    other["From"], other["To"], other["Subject"] = settings.sender, "a@example.org", "Héllo"
    other.set_content("line one\nline two\n")
    data = to_bytes(other, settings)
    assert b"\n" not in data.replace(b"\r\n", b"") and parse(data)["Subject"] == "Héllo"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return private, base64.b64encode(public_der)


def test_dkim_signature_covers_the_list_headers_and_verifies(settings, dkim_key):
    private, public = dkim_key
    signing = load_settings(**{**settings.model_dump(), "dkim_key_file": private, "dkim_selector": "sel1"})
    data = to_bytes(build_message(RENDERED, "a@example.org", signing, unsubscribe_url="https://d.test/u"), signing)
    assert data.startswith(b"DKIM-Signature:")
    signature = parse(data)["DKIM-Signature"]
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in signature.lower()
    domain = signing.sender_domain.encode()

    def dns(name, timeout=5):
        return b"v=DKIM1; k=rsa; p=" + public if name == b"sel1._domainkey." + domain + b"." else None

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Auto-Submitted", b"Auto-Submitted").replace(b"To: a@", b"To: b@"), dnsfunc=dns)


def test_unreadable_dkim_key_is_a_config_error(settings, tmp_path):
    bad = tmp_path / "nokey.pem"
    bad.write_text("not a key")
    for path in (bad, tmp_path / "missing.pem"):
        configured = load_settings(**{**settings.model_dump(), "dkim_key_file": path})
        with pytest.raises(ConfigError, match="DIGEST_DKIM_KEY_FILE"):
            to_bytes(build_message(RENDERED, "a@example.org", configured), configured)


@pytest.mark.parametrize("rendered", [
    RENDERED,  # non-ASCII subject and text, an HTML line too long for 7bit
    RenderedEmail("Plain subject", "<p>short</p>\n<p>lines</p>\n", "one\ntwo\n"),
    RenderedEmail("Pre-encoded", "<p>x</p>\n", "caf\u00e9\n", text_qp="caf=C3=A9\r\n"),
])
@pytest.mark.parametrize("unsubscribe_url", [None, "https://d.test/u/tok"])
def test_message_bytes_are_exactly_the_built_message(settings, rendered, unsubscribe_url):
    from datetime import datetime, timezone

    from digest.mail import message_bytes

    at = datetime(2026, 11, 26, 7, 0, tzinfo=timezone.utc)
    args = dict(message_id=make_message_id(7, EDITION, settings), unsubscribe_url=unsubscribe_url, date=at)
    written = message_bytes(rendered, "ana@bücher.example", settings, **args)
    assert written == to_bytes(build_message(rendered, "ana@bücher.example", settings, **args), settings)
    message = parse(written)
    assert body(message, "plain") == rendered.text and body(message, "html") == rendered.html


def test_message_bytes_refuse_what_build_message_refuses(settings):
    from digest.mail import message_bytes

    with pytest.raises(HeaderError):
        message_bytes(RENDERED, "a@example.org\r\nBcc: victim@example.org", settings)
    with pytest.raises(HeaderError):
        message_bytes(RenderedEmail("Hi\r\nBcc: v@example.org", "<p>x</p>", "x"), "a@example.org", settings)


def test_message_bytes_are_dkim_signed_when_a_key_is_configured(settings, dkim_key):
    from digest.mail import message_bytes

    private, public = dkim_key
    signing = load_settings(**{**settings.model_dump(), "dkim_key_file": private, "dkim_selector": "sel1"})
    data = message_bytes(RENDERED, "a@example.org", signing, unsubscribe_url="https://d.test/u")
    domain = signing.sender_domain.encode()

    def dns(name, timeout=5):
        return b"v=DKIM1; k=rsa; p=" + public if name == b"sel1._domainkey." + domain + b"." else None

    assert data.startswith(b"DKIM-Signature:") and dkim.verify(data, dnsfunc=dns)
