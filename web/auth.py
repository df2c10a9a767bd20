"""Tablet authentication: a signed JWT names the one restaurant a tablet serves.

Tokens arrive in two places because the official SignalR client puts them there:
``Authorization: Bearer`` (negotiate, and every Node client) and the
``access_token`` query parameter (browsers cannot set headers on a WebSocket).
They are never logged (see :mod:`web.access_log`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

from .errors import Refusal
from .protocols.messages import coerce_id

if TYPE_CHECKING:  # importing partner_stream builds the Faust app: token code must not need it
    from partner_stream.settings import Settings


class AuthError(Refusal):
    """A request whose credentials (or the restaurant it names) must be refused before any upgrade."""


@dataclass(frozen=True, slots=True)
class TabletIdentity:
    restaurant_id: str
    subject: str | None
    expires_at: float | None


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_from_request(request: web.Request, query: Mapping[str, str] | None = None) -> str:
    """The bearer token, else the ``access_token`` parameter of ``query`` (default: ``request.query``)."""
    header = request.headers.get("Authorization", "")
    if header:
        bearer = _bearer(header)
        if bearer is None:
            raise AuthError(HTTPStatus.UNAUTHORIZED, "Authorization header must be 'Bearer <token>'")
        return bearer
    token = (request.query if query is None else query).get("access_token", "").strip()
    if not token:
        raise AuthError(
            HTTPStatus.UNAUTHORIZED,
            "missing token: send 'Authorization: Bearer <token>' or the access_token query parameter",
        )
    return token


#: Verified tokens remembered per worker: a reconnect storm (and SignalR's negotiate + socket) would
#: otherwise pay a signature check per request for the same few thousand tokens.
VERIFIED_CACHE_SIZE = 10_000
#: Clock skew tolerated on ``exp`` (and ``nbf``/``iat``), in seconds.
LEEWAY_SECONDS = 5


class TokenVerifier:
    """Verifies tablet tokens with the configured secret and/or public key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._verified: dict[str, dict[str, Any]] = {}

    @cached_property
    def _keys(self) -> list[tuple[Any, list[str]]]:
        keys: list[tuple[Any, list[str]]] = []
        symmetric = [a for a in self.settings.jwt_algorithms if a.startswith("HS")]
        asymmetric = [a for a in self.settings.jwt_algorithms if not a.startswith("HS")]
        if self.settings.jwt_secret and symmetric:
            keys.append((self.settings.jwt_secret, symmetric))
        if self.settings.jwt_public_key and asymmetric:
            keys.append((_load_pem(self.settings.jwt_public_key), asymmetric))
        return keys

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; a token verified before is only re-checked for expiry."""
        claims = self._verified.get(token)
        if claims is not None:
            if time.time() > claims["exp"] + LEEWAY_SECONDS:
                del self._verified[token]
                raise AuthError(HTTPStatus.UNAUTHORIZED, "token expired")
            return dict(claims)
        claims = self._verify_signature(token)
        claims["exp"] = _numeric_exp(claims.get("exp"))
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # oldest first
        self._verified[token] = claims
        return dict(claims)

    def _verify_signature(self, token: str) -> dict[str, Any]:
        if not self._keys:
            raise AuthError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "tablet authentication is not configured on this worker (set PARTNER_STREAM_JWT_SECRET "
                "or PARTNER_STREAM_JWT_PUBLIC_KEY)",
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # DecodeError, and a header PyJWT rejects (e.g. a non-string kid)
            raise AuthError(HTTPStatus.UNAUTHORIZED, "malformed token") from None
        algorithm = header.get("alg")
        for key, algorithms in self._keys:
            if algorithm in algorithms:
                return self._decode(token, key, algorithms)
        raise AuthError(HTTPStatus.UNAUTHORIZED, f"token algorithm {algorithm!r} is not accepted")

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
        options = {"require": ["exp"]}
        try:
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options=options,
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(HTTPStatus.UNAUTHORIZED, "token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError(HTTPStatus.UNAUTHORIZED, "token signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(HTTPStatus.UNAUTHORIZED, f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:  # InvalidTokenError, and InvalidKeyError: a header naming another key type
            raise AuthError(HTTPStatus.UNAUTHORIZED, f"invalid token: {str(exc)[:200]}") from None

    def tablet(self, token: str, restaurant_id: str | None) -> TabletIdentity:
        """The tablet's identity, checked against the restaurant it asks for (if it names one)."""
        claims = self.verify(token)
        claimed = coerce_id(claims.get(self.settings.jwt_restaurant_claim))
        if not claimed:
            raise AuthError(
                HTTPStatus.FORBIDDEN, f"token has no {self.settings.jwt_restaurant_claim!r} claim: not a tablet token"
            )
        if restaurant_id is not None and restaurant_id != claimed:
            raise AuthError(HTTPStatus.FORBIDDEN, f"token is for restaurant {claimed!r}, not {restaurant_id!r}")
        return TabletIdentity(restaurant_id=claimed, subject=claims.get("sub"), expires_at=claims.get("exp"))

    def operator(self, token: str) -> dict[str, Any]:
        """Claims of an operator token; tablet tokens (no operator role) are refused with 403."""
        claims = self.verify(token)
        if claims.get("role") != self.settings.operator_role:
            raise AuthError(HTTPStatus.FORBIDDEN, "not an operator token (needs role=operator)")
        return claims


def operator_token_from_request(request: web.Request) -> str:
    """Operators authenticate with ``Authorization: Bearer`` only: query tokens end up in proxies' logs."""
    bearer = _bearer(request.headers.get("Authorization", ""))
    if bearer is None:
        raise AuthError(HTTPStatus.UNAUTHORIZED, "operator endpoints need 'Authorization: Bearer <operator token>'")
    return bearer


def mint_operator_token(
    secret: str, *, ttl_seconds: int = 3600, role: str = "operator", subject: str = "operator"
) -> str:
    now = int(time.time())
    payload = {"role": role, "sub": subject, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(payload, secret, algorithm="HS256")


def mint_tablet_token(
    restaurant_id: str, secret: str, *, ttl_seconds: int = 12 * 3600, claim: str = "restaurantId"
) -> str:
    now = int(time.time())
    payload = {claim: restaurant_id, "sub": f"tablet:{restaurant_id}", "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(payload, secret, algorithm="HS256")


def _load_pem(value: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    return Path(text).read_bytes()


def _numeric_exp(exp: Any) -> float:
    """``exp`` as a number: PyJWT accepts a numeric string, and the cache compares it with the clock later."""
    try:
        value = float(exp)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float range (10**400)
        raise AuthError(HTTPStatus.UNAUTHORIZED, "token's 'exp' claim is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise AuthError(HTTPStatus.UNAUTHORIZED, "token's 'exp' claim is not a number")
    return value
