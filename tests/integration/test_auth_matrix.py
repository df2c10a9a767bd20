"""Authentication matrix against a real worker: every endpoint that takes a token x every credential kind x place.

Rows are (endpoint, credential kind, place). A forged or broken credential always carries the claims the
endpoint would accept (a tablet of the right restaurant on tablet endpoints, an operator on operator ones),
so only the defect under test can stop it. Every refusal must be a 4xx before any upgrade, with a JSON
``{"error": "..."}`` body and no Python traceback anywhere; every positive control must succeed (200, or 101
for a WebSocket upgrade). ``test_matrix_summary`` runs last and prints one table of every offending row,
counting bypasses (refusal expected, 2xx/101 received) and 5xx.

Rows that expose a server bug are marked ``xfail(strict=True)`` in :data:`KNOWN_BUGS`: they fail loudly
once the bug is fixed, so the mark can be removed.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest

from tests.conftest import restaurant_id
from tests.support.polling import eventually
from tests.support.workers import TEST_JWT_SECRET, Worker

WRONG_SECRET = "not-the-secret-the-worker-was-given-0123456789"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)

# -- endpoints ---------------------------------------------------------------------------------

TABLET, OPERATOR, EITHER = "tablet", "operator", "tablet-or-operator"


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # "{rid}" is replaced by the row's restaurant
    audience: str  # TABLET: tablet token (header or query); OPERATOR: operator token, header only; EITHER
    socket: bool = False
    success: int = 200

    @property
    def accepts_query_token(self) -> bool:
        return self.audience != OPERATOR


ENDPOINTS = [
    Endpoint("negotiate", "POST", "/partnerhub/negotiate?restaurantId={rid}", TABLET),
    Endpoint("signalr-socket", "GET", "/partnerhub?restaurantId={rid}", TABLET, socket=True, success=101),
    Endpoint("plain-socket", "GET", "/ws/partner?restaurantId={rid}", TABLET, socket=True, success=101),
    Endpoint("endpoint", "GET", "/api/restaurants/{rid}/endpoint", EITHER),
    Endpoint("pending-orders", "GET", "/api/restaurants/{rid}/pending-orders", OPERATOR),
    Endpoint("connections", "GET", "/api/restaurants/{rid}/connections", OPERATOR),
    Endpoint("worker-status", "GET", "/api/worker/status", OPERATOR),
    Endpoint("worker-unseen", "GET", "/api/worker/unseen", OPERATOR),
    Endpoint("cluster", "GET", "/api/cluster", OPERATOR),
    Endpoint("orders-unseen", "GET", "/api/orders/unseen", OPERATOR),
]
BY_NAME = {e.name: e for e in ENDPOINTS}

# -- credentials -------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT with any header and signature bytes, no key involved."""
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), signature)
    return ".".join(_b64(p) for p in parts)


def tablet_claims(restaurant: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"restaurantId": restaurant, "sub": f"tablet:{restaurant}", "iat": now, "exp": now + 3600, **overrides}


def operator_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"role": "operator", "sub": "operator", "iat": now, "exp": now + 3600, **overrides}


def sign(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _rsa_looking_jwk() -> dict[str, str]:
    return {"kty": "RSA", "e": "AQAB", "n": _b64(os.urandom(256)), "kid": "attacker"}


#: kind -> (places it is tried in, one-line description)
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "none": (("nowhere",), "no credential at all"),
    "empty": (("header", "query"), "'Bearer ' with nothing after it / access_token="),
    "garbage": (("header", "query"), "not a JWT"),
    "alg-none": (("header", "query"), "unsigned token, header alg=none"),
    "wrong-secret": (("header", "query"), "HS256 signed with another secret"),
    "expired": (("header", "query"), "exp an hour ago"),
    "not-yet-valid": (("header", "query"), "nbf an hour ahead"),
    "no-exp": (("header", "query"), "validly signed, no exp claim"),
    "exp-string": (("header", "query"), "exp as a numeric string an hour ahead (tolerated by design)"),
    "exp-string-expired": (("header", "query"), "exp as a numeric string an hour ago"),
    "exp-overflow": (("header", "query"), "validly signed, exp an integer beyond float range (10**400)"),
    "es256-header": (("header", "query"), "header alg=ES256, random signature (no public key configured)"),
    "rs256-jwk": (("header", "query"), "header alg=RS256 with an embedded RSA jwk, random signature"),
    "other-restaurant": (("header", "query"), "valid tablet token of another restaurant"),
    "tablet": (("header", "query"), "valid tablet token of this restaurant"),
    "operator": (("header", "query"), "valid operator token"),
    "wrong-scheme": (("header",), "valid token but 'Authorization: Basic <token>'"),
    "bad-header-good-query": (("both",), "garbage in the header, a valid token in the query: the header wins"),
}


def native_claims(endpoint: Endpoint, restaurant: str, **overrides: Any) -> dict[str, Any]:
    """The claims the endpoint would accept: forged credentials carry these, so only the forgery can stop them."""
    return operator_claims(**overrides) if endpoint.audience == OPERATOR else tablet_claims(restaurant, **overrides)


def credential(kind: str, endpoint: Endpoint, restaurant: str) -> str | None:
    now = int(time.time())
    claims = native_claims(endpoint, restaurant)
    match kind:
        case "none":
            return None
        case "empty":
            return ""
        case "garbage":
            return "not-a-jwt"
        case "alg-none":
            return forge({"alg": "none", "typ": "JWT"}, claims)
        case "wrong-secret":
            return sign(claims, WRONG_SECRET)
        case "expired":
            return sign(native_claims(endpoint, restaurant, iat=now - 7200, exp=now - 3600))
        case "not-yet-valid":
            return sign(native_claims(endpoint, restaurant, nbf=now + 3600, exp=now + 7200))
        case "no-exp":
            return sign({k: v for k, v in claims.items() if k != "exp"})
        case "exp-string":
            return sign(native_claims(endpoint, restaurant, exp=str(now + 3600)))
        case "exp-string-expired":
            return sign(native_claims(endpoint, restaurant, iat=now - 7200, exp=str(now - 3600)))
        case "exp-overflow":
            return sign(native_claims(endpoint, restaurant, exp=10**400))
        case "es256-header":
            return forge({"alg": "ES256", "typ": "JWT"}, claims, os.urandom(64))
        case "rs256-jwk":
            return forge({"alg": "RS256", "typ": "JWT", "jwk": _rsa_looking_jwk()}, claims, os.urandom(256))
        case "other-restaurant":
            return sign(tablet_claims(f"{restaurant}-other"))
        case "tablet":
            return sign(tablet_claims(restaurant))
        case "operator":
            return sign(operator_claims())
        case "wrong-scheme" | "bad-header-good-query":
            return sign(claims)
    raise AssertionError(f"unknown credential kind {kind!r}")


def expected_status(endpoint: Endpoint, kind: str, place: str) -> int:
    """What the worker must answer: the endpoint's success status, or the refusal's 401/403."""
    if endpoint.audience == OPERATOR and place in ("query", "both"):
        return 401  # operators authenticate with the header only; a query token is never read
    if kind in ("tablet", "operator", "exp-string", "other-restaurant"):
        identity = {"tablet": TABLET, "operator": OPERATOR, "other-restaurant": "other"}.get(kind, endpoint.audience)
        if identity == OPERATOR and endpoint.audience == EITHER and place == "query":
            return 401  # operator tokens belong in the header only, on every endpoint
        if identity == endpoint.audience or (endpoint.audience == EITHER and identity in (TABLET, OPERATOR)):
            return endpoint.success
        return 403  # a valid token of the wrong identity
    return 401


# -- rows --------------------------------------------------------------------------------------

#: (endpoint, kind, place) -> why the row fails today. Each is a server bug to fix; the row then XPASSes.
#: Empty: the two this matrix found (an integer ``exp`` past float range gave a 500; an operator token in the
#: query was accepted by the endpoint lookup) are fixed.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Row:
    endpoint: str
    kind: str
    place: str

    @property
    def id(self) -> str:
        return f"{self.endpoint}|{self.kind}|{self.place}"


def all_rows() -> list[Row]:
    rows = []
    for endpoint in ENDPOINTS:
        for kind, (places, _) in KINDS.items():
            rows.extend(Row(endpoint.name, kind, place) for place in places)
    return rows


def row_params() -> list[Any]:
    params = []
    for row in all_rows():
        reason = KNOWN_BUGS.get((row.endpoint, row.kind, row.place))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(row, id=row.id, marks=marks))
    return params


@dataclass
class Outcome:
    row: Row
    expected: int
    status: int
    body: str
    problems: list[str] = field(default_factory=list)

    @property
    def bypass(self) -> bool:
        return self.expected >= 400 and (200 <= self.status < 300 or self.status == 101)

    @property
    def server_error(self) -> bool:
        return self.status >= 500


#: Filled by the row tests, read by ``test_matrix_summary``.
OUTCOMES: dict[str, Outcome] = {}

# -- requests ----------------------------------------------------------------------------------


def request_parts(row: Row, token: str | None, good_token: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query) carrying ``token`` in the row's place."""
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    if row.place == "header":
        scheme = "Basic" if row.kind == "wrong-scheme" else "Bearer"
        headers["Authorization"] = f"{scheme} {token}"
    elif row.place == "query":
        query["access_token"] = token or ""
    elif row.place == "both":
        headers["Authorization"] = "Bearer not-a-jwt"
        query["access_token"] = good_token
    return headers, query


def websocket_upgrade_headers() -> dict[str, str]:
    """What a WebSocket client sends: the server must refuse before answering 101."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }


async def perform(session: aiohttp.ClientSession, worker: Worker, row: Row, restaurant: str) -> tuple[int, str, str]:
    """(status, body text, headers as text) of the row's request."""
    endpoint = BY_NAME[row.endpoint]
    token = credential(row.kind, endpoint, restaurant)
    good = sign(native_claims(endpoint, restaurant))
    headers, query = request_parts(row, token, good)
    if endpoint.socket:
        headers.update(websocket_upgrade_headers())
    url = worker.base_url + endpoint.path.format(rid=restaurant)
    async with session.request(endpoint.method, url, headers=headers, params=query) as response:
        header_text = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        if response.status == 101:
            response.close()  # an accepted upgrade: drop the socket, there is no body to read
            return 101, "", header_text
        return response.status, await response.text(errors="replace"), header_text


def traceback_in(text: str) -> bool:
    return "Traceback (most recent call last)" in text or 'File "/' in text or '.py", line ' in text


def judge(row: Row, expected: int, status: int, body: str, headers: str) -> Outcome:
    outcome = Outcome(row, expected, status, body)
    problems = outcome.problems
    if traceback_in(body) or traceback_in(headers):
        problems.append("TRACEBACK")
    if expected >= 400:
        if outcome.bypass:
            problems.append("BYPASS")
        elif status >= 500:
            problems.append("5XX")
        elif status != expected:
            problems.append(f"WRONG-STATUS (want {expected})")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not (isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]):
            problems.append("NO-JSON-ERROR")
    else:
        if status != expected:
            problems.append("5XX" if status >= 500 else "DENIED (positive control)")
        elif status == 200:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or "error" in payload:
                problems.append("BAD-200-BODY")
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'endpoint':<16} {'credential':<22} {'place':<8} {'want':>4} {'got':>4}  problems / body"]
    for o in outcomes:
        excerpt = " ".join(o.body.split())[:90]
        lines.append(
            f"{o.row.endpoint:<16} {o.row.kind:<22} {o.row.place:<8} {o.expected:>4} {o.status:>4}  "
            f"{', '.join(o.problems)} | {excerpt}"
        )
    return "\n".join(lines)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        yield session


@pytest.fixture(scope="module")
async def matrix_restaurant(shared_worker: Worker, http: aiohttp.ClientSession) -> str:
    """One restaurant for every row; the worker is ready (no 503 is legitimate after this)."""

    async def ready() -> int:
        async with http.get(f"{shared_worker.base_url}/readyz") as response:
            return response.status

    await eventually(ready, lambda status: status == 200, timeout=60, what="the shared worker to be ready")
    return restaurant_id()


# -- tests -------------------------------------------------------------------------------------


def test_matrix_covers_every_endpoint_and_kind() -> None:
    rows = all_rows()
    assert {r.endpoint for r in rows} == set(BY_NAME)
    assert {r.kind for r in rows} == set(KINDS)
    assert len({r.id for r in rows}) == len(rows)
    unknown = set(KNOWN_BUGS) - {(r.endpoint, r.kind, r.place) for r in rows}
    assert not unknown, f"KNOWN_BUGS names rows that do not exist: {unknown}"
    positive = [r for r in rows if expected_status(BY_NAME[r.endpoint], r.kind, r.place) < 400]
    assert {r.endpoint for r in positive} == set(BY_NAME), "every endpoint needs a positive control"


@pytest.mark.parametrize("row", row_params())
async def test_auth_row(row: Row, shared_worker: Worker, http: aiohttp.ClientSession, matrix_restaurant: str) -> None:
    endpoint = BY_NAME[row.endpoint]
    expected = expected_status(endpoint, row.kind, row.place)
    status, body, headers = await perform(http, shared_worker, row, matrix_restaurant)
    outcome = judge(row, expected, status, body, headers)
    OUTCOMES[row.id] = outcome
    assert not outcome.problems, f"{KINDS[row.kind][1]}\n{table([outcome])}\nheaders:\n{headers}"


def test_matrix_summary() -> None:
    """One readable table of every offending row; known bugs (xfail rows) are listed but do not fail this."""
    if not OUTCOMES:
        pytest.skip("no matrix row ran in this session")
    offending = [o for o in OUTCOMES.values() if o.problems]
    known = [o for o in offending if (o.row.endpoint, o.row.kind, o.row.place) in KNOWN_BUGS]
    new = [o for o in offending if o not in known]
    bypasses = sum(o.bypass for o in offending)
    errors = sum(o.server_error for o in offending)
    positives = sum(o.expected < 400 for o in OUTCOMES.values())
    summary = (
        f"{len(OUTCOMES)} rows ({positives} positive controls): {len(offending)} offending, "
        f"{bypasses} bypass(es), {errors} 5xx, {len(known)} known bug row(s)"
    )
    print(summary)
    if known:
        print("known bugs (xfail rows):\n" + table(known))
    assert not new, f"{summary}\n{table(new)}"
