"""One CORS policy for every browser-facing route: same origin by default, credentials never for '*'."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from partner_stream_web.cors import CorsPolicy


def request(origin: str | None, host: str = "worker:5003", method: str = "GET"):
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request(method, "/partnerhub/negotiate", headers=headers)


def test_by_default_only_the_workers_own_origin_and_non_browsers_are_allowed() -> None:
    policy = CorsPolicy([])
    assert policy.allows(request(None))
    assert policy.allows(request("http://worker:5003"))
    assert policy.headers(request("http://worker:5003"))["Access-Control-Allow-Credentials"] == "true"
    assert not policy.allows(request("http://evil.example"))
    assert policy.headers(request("http://evil.example")) == {}


def test_a_listed_origin_gets_credentialed_cors_with_its_exact_origin() -> None:
    policy = CorsPolicy(["https://tablets.example.com/"])
    headers = policy.headers(request("https://tablets.example.com"))
    assert headers["Access-Control-Allow-Origin"] == "https://tablets.example.com"
    assert headers["Access-Control-Allow-Credentials"] == "true" and headers["Vary"] == "Origin"
    assert not policy.allows(request("https://tablets.example.com.evil.example"))


def test_a_wildcard_allows_any_origin_but_never_with_credentials() -> None:
    policy = CorsPolicy(["*"])
    headers = policy.headers(request("http://anywhere.example"))
    assert headers["Access-Control-Allow-Origin"] == "http://anywhere.example"
    assert "Access-Control-Allow-Credentials" not in headers
    assert not policy.allows(request("http://" + "a" * 600))  # bounded before it is echoed


def test_a_preflight_from_a_refused_origin_is_a_403_with_a_reason() -> None:
    policy = CorsPolicy([])
    refused = policy.preflight(request("http://evil.example", method="OPTIONS"), "POST, OPTIONS")
    assert refused.status == 403
    allowed = policy.preflight(request("http://worker:5003", method="OPTIONS"), "POST, OPTIONS")
    assert allowed.status == 204 and "x-signalr-user-agent" in allowed.headers["Access-Control-Allow-Headers"]
