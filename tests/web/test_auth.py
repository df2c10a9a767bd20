"""Tablet token checks (web.auth) without a server: TokenVerifier, token_from_request, mint_tablet_token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request

from partner_stream.settings import Settings
from partner_stream_web.auth import AuthError, TokenVerifier, mint_tablet_token, token_from_request

SECRET = "unit-test-secret-long-enough-for-hs512-0123456789-abcdefghijklmnop"
ALL_ALGORITHMS = ["HS256", "RS256", "ES256"]
# Never parsed unless an RS256/ES256 token reaches it: enough to configure "public key only".
DUMMY_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"


def make_settings(**overrides: Any) -> Settings:
    """Settings with every JWT field explicit, so PARTNER_STREAM_* variables in the shell cannot interfere."""
    values: dict[str, Any] = {
        "jwt_secret": None,
        "jwt_public_key": None,
        "jwt_algorithms": ALL_ALGORITHMS,
        "jwt_audience": None,
        "jwt_issuer": None,
        "jwt_restaurant_claim": "restaurantId",
        **overrides,
    }
    return Settings(**values)


def verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(make_settings(**{"jwt_secret": SECRET, **overrides}))


def claims(restaurant: Any = "r1", *, ttl: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "tablet-7", "iat": now, "exp": now + ttl, **extra}
    if restaurant is not None:
        payload["restaurantId"] = restaurant
    return payload


def hs256(payload: dict[str, Any], secret: str = SECRET, **kwargs: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", **kwargs)


@contextmanager
def refused(status: HTTPStatus, match: str) -> Iterator[None]:
    """The block raises AuthError with ``status`` and a reason containing ``match``."""
    with pytest.raises(AuthError) as info:
        yield
    assert info.value.status == status, (info.value.status, info.value.reason)
    assert match in info.value.reason, info.value.reason


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- TokenVerifier.tablet ---------------------------------------------------------------------


def test_valid_hs256_token_identifies_the_tablet() -> None:
    payload = claims("r1")
    identity = verifier().tablet(hs256(payload), "r1")
    assert identity.restaurant_id == "r1"
    assert identity.subject == "tablet-7"
    assert identity.expires_at == payload["exp"]


def test_token_accepted_when_no_restaurant_is_requested() -> None:
    assert verifier().tablet(hs256(claims("r1")), None).restaurant_id == "r1"


def test_token_for_another_restaurant_is_forbidden() -> None:
    with refused(HTTPStatus.FORBIDDEN, "token is for restaurant 'r1', not 'r2'"):
        verifier().tablet(hs256(claims("r1")), "r2")


def test_expired_token_is_unauthorized_with_token_expired() -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "token expired"):
        verifier().tablet(hs256(claims(ttl=-60)), "r1")


def test_token_expired_within_the_five_second_leeway_is_still_accepted() -> None:
    assert verifier().tablet(hs256(claims(ttl=-2)), "r1").restaurant_id == "r1"


def test_token_with_bad_signature_is_unauthorized() -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "token signature is invalid"):
        verifier().tablet(hs256(claims(), secret="another-secret-of-a-reasonable-length-9876543210"), "r1")


def test_token_without_exp_is_unauthorized() -> None:
    payload = claims()
    del payload["exp"]
    with refused(HTTPStatus.UNAUTHORIZED, "token lacks the 'exp' claim"):
        verifier().tablet(hs256(payload), "r1")


@pytest.mark.parametrize("token", ["not-a-jwt", "", "a.b.c", "eyJhbGciOiJIUzI1NiJ9", "....."])
def test_malformed_token_is_unauthorized(token: str) -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "malformed token"):
        verifier().tablet(token, "r1")


def test_token_with_non_string_kid_header_is_unauthorized_not_an_unhandled_error() -> None:
    token = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': 123})}.{b64url(claims())}.c2ln"
    with refused(HTTPStatus.UNAUTHORIZED, ""):
        verifier().tablet(token, "r1")


@pytest.mark.parametrize("algorithm", ["HS512", "none"])
def test_token_with_an_algorithm_not_accepted_is_unauthorized(algorithm: str) -> None:
    token = jwt.encode(claims(), None if algorithm == "none" else SECRET, algorithm=algorithm)
    with refused(HTTPStatus.UNAUTHORIZED, f"token algorithm {algorithm!r} is not accepted"):
        verifier().tablet(token, "r1")


def test_hs256_token_is_refused_when_only_a_public_key_is_configured() -> None:
    # Algorithm confusion: an HMAC "signed" with the public key text must not verify.
    v = TokenVerifier(make_settings(jwt_public_key=DUMMY_PUBLIC_KEY))
    assert v.configured
    # PyJWT refuses to sign with a PEM as HMAC key, so sign by hand as an attacker would.
    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url(claims())}"
    mac = hmac.new(DUMMY_PUBLIC_KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with refused(HTTPStatus.UNAUTHORIZED, "token algorithm 'HS256' is not accepted"):
        v.tablet(token, "r1")


@pytest.mark.parametrize("restaurant", [None, "", True, ["r1"], {"id": "r1"}, 1.5])
def test_token_without_a_usable_restaurant_claim_is_forbidden(restaurant: Any) -> None:
    payload = claims(None)
    if restaurant is not None:
        payload["restaurantId"] = restaurant
    with refused(HTTPStatus.FORBIDDEN, "token has no 'restaurantId' claim: not a tablet token"):
        verifier().tablet(hs256(payload), None)


def test_integer_restaurant_claim_is_accepted_as_a_string() -> None:
    identity = verifier().tablet(hs256(claims(42)), "42")
    assert identity.restaurant_id == "42"
    with refused(HTTPStatus.FORBIDDEN, "not '43'"):
        verifier().tablet(hs256(claims(42)), "43")


def test_restaurant_claim_name_is_configurable() -> None:
    v = verifier(jwt_restaurant_claim="store")
    assert v.tablet(hs256(claims(None, store="s9")), "s9").restaurant_id == "s9"
    with refused(HTTPStatus.FORBIDDEN, "token has no 'store' claim"):
        v.tablet(hs256(claims("r1")), "r1")


def test_configured_audience_and_issuer_are_required() -> None:
    v = verifier(jwt_audience="tablets", jwt_issuer="https://auth.example")
    good = hs256(claims(aud="tablets", iss="https://auth.example"))
    assert v.tablet(good, "r1").restaurant_id == "r1"
    with refused(HTTPStatus.UNAUTHORIZED, "token lacks the 'aud' claim"):
        v.tablet(hs256(claims(iss="https://auth.example")), "r1")
    with refused(HTTPStatus.UNAUTHORIZED, "invalid token"):
        v.tablet(hs256(claims(aud="someone-else", iss="https://auth.example")), "r1")


@pytest.mark.parametrize("as_path", [False, True], ids=["pem-text", "pem-path"])
def test_rs256_token_verifies_with_the_configured_public_key(as_path: bool, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    if as_path:
        key_file = tmp_path / "tablets.pub.pem"
        key_file.write_text(public_pem)
        configured = str(key_file)
    else:
        configured = public_pem
    v = TokenVerifier(make_settings(jwt_public_key=configured))

    token = jwt.encode(claims("r1"), private_key, algorithm="RS256")
    assert v.tablet(token, "r1").restaurant_id == "r1"

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with refused(HTTPStatus.UNAUTHORIZED, "token signature is invalid"):
        v.tablet(jwt.encode(claims("r1"), other_key, algorithm="RS256"), "r1")


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"jwt_secret": SECRET, "jwt_algorithms": ["RS256"]},
        {"jwt_public_key": DUMMY_PUBLIC_KEY, "jwt_algorithms": ["HS256"]},
    ],
    ids=["nothing", "secret-but-no-hs-algorithm", "key-but-only-hs-algorithm"],
)
def test_verifier_without_a_usable_key_answers_503(overrides: dict[str, Any]) -> None:
    v = TokenVerifier(make_settings(**overrides))
    assert not v.configured
    with refused(HTTPStatus.SERVICE_UNAVAILABLE, "PARTNER_STREAM_JWT_SECRET"):
        v.tablet(hs256(claims()), "r1")


def test_auth_error_response_carries_status_reason_and_bearer_challenge_only_for_401() -> None:
    unauthorized = AuthError(HTTPStatus.UNAUTHORIZED, "token expired").response()
    assert unauthorized.status == 401
    assert unauthorized.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert json.loads(unauthorized.text or "") == {"error": "token expired"}
    forbidden = AuthError(HTTPStatus.FORBIDDEN, "nope").response()
    assert forbidden.status == 403 and "WWW-Authenticate" not in forbidden.headers


# -- token_from_request -------------------------------------------------------------------------


def request(query: str = "", authorization: str | None = None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_mocked_request("GET", f"/ws/partner?restaurantId=r1{query}", headers=headers)


def test_token_from_authorization_header_wins_over_query() -> None:
    assert token_from_request(request("&access_token=from-query", "Bearer from-header")) == "from-header"


@pytest.mark.parametrize("header", ["bearer tok", "BEARER tok", "Bearer   tok  "])
def test_bearer_scheme_is_case_insensitive_and_token_is_stripped(header: str) -> None:
    assert token_from_request(request(authorization=header)) == "tok"


def test_token_from_access_token_query_parameter() -> None:
    assert token_from_request(request("&access_token=from-query")) == "from-query"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"])
def test_non_bearer_or_empty_authorization_header_is_unauthorized_even_with_a_query_token(header: str) -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "Authorization header must be 'Bearer <token>'"):
        token_from_request(request("&access_token=from-query", header))


@pytest.mark.parametrize("query", ["", "&access_token=", "&access_token=%20%20"])
def test_missing_token_is_unauthorized(query: str) -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "missing token"):
        token_from_request(request(query))


# -- mint_tablet_token -----------------------------------------------------------------------------


def test_minted_token_round_trips_through_the_verifier() -> None:
    before = int(time.time())
    token = mint_tablet_token("r1", SECRET, ttl_seconds=600)
    identity = verifier().tablet(token, "r1")
    assert identity.restaurant_id == "r1"
    assert identity.subject == "tablet:r1"
    assert identity.expires_at is not None and before + 600 <= identity.expires_at <= int(time.time()) + 600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_minted_token_with_custom_claim_round_trips() -> None:
    token = mint_tablet_token("s9", SECRET, claim="store")
    assert verifier(jwt_restaurant_claim="store").tablet(token, "s9").restaurant_id == "s9"


def test_minted_token_with_another_secret_is_refused() -> None:
    token = mint_tablet_token("r1", "another-secret-of-a-reasonable-length-9876543210")
    with refused(HTTPStatus.UNAUTHORIZED, "token signature is invalid"):
        verifier().tablet(token, "r1")


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(make_settings(jwt_secret=SECRET))
    token = mint_tablet_token("42", SECRET, ttl_seconds=60)
    assert verifier.tablet(token, "42").restaurant_id == "42"
    later = time.time() + 3600
    monkeypatch.setattr("partner_stream_web.auth.time.time", lambda: later)
    with pytest.raises(AuthError) as refused:
        verifier.tablet(token, "42")
    assert refused.value.status == HTTPStatus.UNAUTHORIZED and "expired" in refused.value.reason


def test_a_remembered_token_is_checked_against_the_restaurant_every_time() -> None:
    verifier = TokenVerifier(make_settings(jwt_secret=SECRET))
    token = mint_tablet_token("42", SECRET)
    verifier.tablet(token, "42")
    with pytest.raises(AuthError) as refused:
        verifier.tablet(token, "43")
    assert refused.value.status == HTTPStatus.FORBIDDEN


def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(make_settings(jwt_secret=SECRET))
    forged = mint_tablet_token("42", "another-secret-that-is-long-enough-for-hs256-use")
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.tablet(forged, "42")
    assert forged not in verifier._verified


def test_an_es256_header_against_an_rsa_public_key_is_unauthorized_not_a_server_error() -> None:
    """PyJWT raises InvalidKeyError (not an InvalidTokenError) when the header's algorithm does not fit the key."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_public = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode(claims("r1"), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with refused(HTTPStatus.UNAUTHORIZED, "invalid token"):
        TokenVerifier(make_settings(jwt_public_key=rsa_public)).tablet(token, "r1")


@pytest.mark.parametrize("exp", ["not a number", [1], None, 10**400])
def test_a_non_numeric_exp_is_unauthorized(exp: Any) -> None:
    with refused(HTTPStatus.UNAUTHORIZED, "exp"):
        verifier().tablet(hs256({**claims("r1"), "exp": exp}), "r1")


def test_a_numeric_string_exp_is_checked_the_same_on_every_use() -> None:
    """The verified-token cache compares exp with the clock on later uses: it must be a number there too."""
    v = verifier()
    token = hs256({**claims("r1"), "exp": str(int(time.time()) + 3600)})
    for _ in range(2):
        try:
            assert v.tablet(token, "r1").restaurant_id == "r1"
        except AuthError as refusal:  # refusing a string exp outright is as good, but never a TypeError
            assert refusal.status == HTTPStatus.UNAUTHORIZED
