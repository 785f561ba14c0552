"""Verifying access tokens with flask-jwt-extended: one algorithm, the public key chosen by the
token's `kid` among the published signing keys, the RFC 9068 header, the denylist on
(iss, jti), and the client as it is now. Every refusal is a 401 with its own code.

The header checks run in the ``decode_key_loader``, before PyJWT verifies anything, so a token
naming a key URL (jku, jwk, x5u, x5c) or another algorithm never reaches a key; no URL is ever
fetched.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, current_app
from flask_jwt_extended import verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException, RevokedTokenError

from auth.errors import AuthenticationFailed, AuthError
from auth.principal import Principal
from auth.signing_keys import published_keys
from auth.tokens import is_token_revoked, principal_from_claims
from gateway.extensions import jwt_manager
from gateway.runtime import db_session, get_runtime

EXTENSION_KEY = "predgate.token_keys"
MAX_TOKEN_BYTES = 8192
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
KEY_URL_HEADERS = ("jku", "jwk", "x5u", "x5c")
_KID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Published keys are re-read at most this often per process: a rotation is seen within it.
KEY_CACHE_SECONDS = 10.0
KEY_MISS_RELOAD_SECONDS = 1.0

# PyJWT's refusals after the key was chosen -> reason code.
_PYJWT_CODES: tuple[tuple[type[Exception], str], ...] = (
    (pyjwt.ExpiredSignatureError, "token_expired"),
    (pyjwt.ImmatureSignatureError, "token_not_yet_valid"),
    (pyjwt.InvalidIssuerError, "token_issuer_invalid"),
    (pyjwt.InvalidAudienceError, "token_audience_invalid"),
    (pyjwt.MissingRequiredClaimError, "token_claims_invalid"),
    (pyjwt.InvalidSignatureError, "token_signature_invalid"),
    (pyjwt.InvalidAlgorithmError, "token_alg_not_allowed"),
    (pyjwt.InvalidIssuedAtError, "token_claims_invalid"),
)


def _refuse(code: str, detail: str = "The access token is not valid.") -> AuthenticationFailed:
    return AuthenticationFailed(code, detail)


@dataclass
class TokenKeys:
    """This process's copy of the published public keys, by kid, refreshed every few seconds."""

    keys: dict[str, EllipticCurvePublicKey] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key_for(self, kid: str) -> EllipticCurvePublicKey | None:
        """The public key with that kid, if it may verify a token now."""
        with self.lock:
            age = time.monotonic() - self.loaded_at
            # A kid we do not know may be a key another replica just rotated in: re-read, but
            # at most once per KEY_MISS_RELOAD_SECONDS, so invented kids cannot flood the DB.
            if age > KEY_CACHE_SECONDS or (kid not in self.keys and age > KEY_MISS_RELOAD_SECONDS):
                self.keys = _load_published()
                self.loaded_at = time.monotonic()
            return self.keys.get(kid)

    def forget(self) -> None:
        """Re-read the keys on the next lookup (after a rotation in this process)."""
        with self.lock:
            self.loaded_at = float("-inf")


def _load_published() -> dict[str, EllipticCurvePublicKey]:
    keys = {}
    for key in published_keys(db_session()):
        public = load_pem_public_key(key.public_pem.encode())
        assert isinstance(public, EllipticCurvePublicKey)
        keys[key.kid] = public
    return keys


def token_keys(app: Flask | None = None) -> TokenKeys:
    """The app's cache of verifying keys."""
    keys = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(keys, TokenKeys)
    return keys


@jwt_manager.decode_key_loader
def _verifying_key(header: Mapping[str, Any], _claims: Mapping[str, Any]) -> Any:
    """Check the header before anything is verified, then pick the key by kid."""
    check_header(header, algorithm=get_runtime().settings.jwt_algorithm)
    key = token_keys().key_for(str(header["kid"]))
    if key is None:
        raise _refuse("token_kid_unknown")
    return key


def check_header(header: Mapping[str, Any], *, algorithm: str) -> None:
    """The RFC 9068 header with our one algorithm and a well-formed kid; no key URLs."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _refuse("token_alg_none")
    if alg != algorithm:
        raise _refuse("token_alg_not_allowed")
    if any(name in header for name in KEY_URL_HEADERS):
        raise _refuse("token_key_header")
    if header.get("typ") not in ACCESS_TOKEN_TYPES:
        raise _refuse("token_typ_invalid")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise _refuse("token_kid_malformed")


@jwt_manager.token_in_blocklist_loader
def _is_revoked(_header: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """The denylist on (iss, jti); a token without exp or jti is refused before the lookup."""
    check_required_claims(claims)
    return is_token_revoked(db_session(), issuer=str(claims["iss"]), jti=str(claims["jti"]))


def check_required_claims(claims: Mapping[str, Any]) -> None:
    """exp and jti must be present: PyJWT verifies exp only when the token carries one."""
    if not isinstance(claims.get("exp"), int | float):
        raise _refuse("token_exp_missing")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 64:
        raise _refuse("token_jti_missing")


def authenticate_token(credential: str) -> Principal:
    """Verify the request's bearer token and return its principal; 401 with a reason otherwise."""
    if len(credential.encode()) > MAX_TOKEN_BYTES:
        raise _refuse("token_too_large", "The access token is too large.")
    try:
        verified = verify_jwt_in_request(locations=["headers"], verify_type=False)
    except AuthenticationFailed:
        raise
    except RevokedTokenError as revoked:
        # Raised only after the signature verified: the client id is authentic.
        client_id = revoked.jwt_data.get("client_id")
        raise AuthenticationFailed(
            "token_revoked",
            "The access token has been revoked.",
            key_id=client_id if isinstance(client_id, str) else None,
        ) from None
    except pyjwt.InvalidTokenError as exc:
        raise _refuse(_pyjwt_code(exc)) from None
    except JWTExtendedException:
        raise _refuse("token_malformed") from None
    if verified is None:  # flask-jwt-extended exempts OPTIONS
        raise _refuse("token_malformed")
    return principal_from_claims(db_session(), verified[1])


def decode_access_token(token: str) -> dict[str, Any] | None:
    """The claims of a token this server issued and would accept now, else None.

    For revocation and introspection, where an unusable token is not an error.
    """
    if len(token.encode()) > MAX_TOKEN_BYTES:
        return None
    settings = get_runtime().settings
    try:
        header = pyjwt.get_unverified_header(token)
        check_header(header, algorithm=settings.jwt_algorithm)
        key = token_keys().key_for(str(header["kid"]))
        if key is None:
            return None
        claims: dict[str, Any] = pyjwt.decode(
            token,
            key,
            algorithms=[settings.jwt_algorithm],
            audience=settings.oauth_audience,
            issuer=settings.oauth_issuer,
            leeway=current_app.config["JWT_DECODE_LEEWAY"],
            options={"require": ["exp", "jti", "iat", "sub"]},
        )
        check_required_claims(claims)
    except (pyjwt.InvalidTokenError, AuthenticationFailed):
        return None
    return claims


def introspect_token(token: str) -> dict[str, Any]:
    """RFC 7662: active with the token's claims if a request with it would be accepted now."""
    claims = decode_access_token(token)
    if claims is None:
        return {"active": False}
    session = db_session()
    try:
        if is_token_revoked(session, issuer=str(claims["iss"]), jti=str(claims["jti"])):
            return {"active": False}
        principal = principal_from_claims(session, claims)
    except AuthError:
        return {"active": False}
    return {
        "active": True,
        "token_type": "Bearer",
        "scope": " ".join(sorted(principal.scopes)),
        "client_id": principal.principal_id,
        "sub": claims["sub"],
        "aud": claims["aud"],
        "iss": claims["iss"],
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "jti": claims["jti"],
        "tenant": principal.tenant_name,
        "role": principal.role,
    }


def _pyjwt_code(exc: Exception) -> str:
    for kind, code in _PYJWT_CODES:
        if isinstance(exc, kind):
            return code
    return "token_malformed"


def init_access_tokens(app: Flask) -> None:
    """Bind flask-jwt-extended and this app's key cache."""
    jwt_manager.init_app(app)
    app.extensions[EXTENSION_KEY] = TokenKeys()
