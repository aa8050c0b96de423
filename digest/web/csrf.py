"""Cross-site request forgery protection: a signed double-submit token.

Every page with a form sets a random value in a SameSite=Lax, HttpOnly cookie and puts an HMAC of
that value (itsdangerous, DIGEST_SECRET_KEY) in a hidden field. A POST is accepted only when the
field verifies and matches the cookie. Another site can make a browser post to us, but it can
neither read nor set our cookie, nor compute the HMAC.

Chosen over an Origin/Referer check because privacy extensions and some proxies strip or blank
those headers, which would lock real people out; the token needs nothing but a cookie.

The RFC 8058 one-click unsubscribe POST is exempt: mail providers send it without cookies, and the
signed unsubscribe URL itself authenticates it.
"""

from __future__ import annotations

import hmac
import secrets

from itsdangerous import BadSignature, Signer

COOKIE = "digest_csrf"
FIELD = "csrf_token"


class CsrfProtect:
    def __init__(self, secret_keys: str | tuple[str, ...], secure: bool) -> None:
        # Oldest first, as Settings.secret_keys: signs with the newest, accepts any (key rotation).
        self.signer = Signer([secret_keys] if isinstance(secret_keys, str) else list(secret_keys), salt="digest.csrf")
        self.secure = secure

    def new_value(self) -> str:
        return secrets.token_urlsafe(18)

    def form_token(self, cookie_value: str) -> str:
        return self.signer.sign(cookie_value).decode()

    def valid(self, cookie_value: str | None, form_token: str | None) -> bool:
        if not cookie_value or not form_token:
            return False
        try:
            signed_value = self.signer.unsign(form_token).decode()
        except BadSignature:
            return False
        return hmac.compare_digest(signed_value, cookie_value)

    def set_cookie(self, response, value: str) -> None:
        response.set_cookie(COOKIE, value, httponly=True, samesite="lax", secure=self.secure, path="/")
