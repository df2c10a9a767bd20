"""The access log never prints a token: web.access_log.redact and its middleware, without a server."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from web.access_log import REDACTED, access_log, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyZXN0YXVyYW50SWQiOiJyMSJ9.c2lnbmF0dXJl"


def rel_url(raw: str) -> URL:
    """The URL as aiohttp's HTTP parser hands it to the middleware: built with encoded=True, never re-quoted.

    (make_mocked_request re-quotes, turning %2F into / and %5F into _, which the real server does not.)
    """
    return URL(raw, encoded=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            f"/partnerhub?restaurantId=r1&id=conn-token&access_token={JWT}",
            f"/partnerhub?restaurantId=r1&id={REDACTED}&access_token={REDACTED}",
        ),
        (
            f"/ws/partner?access_token={JWT}&restaurantId=r%201&negotiateVersion=1",
            f"/ws/partner?access_token={REDACTED}&restaurantId=r%201&negotiateVersion=1",
        ),
        ("/ws?token=abc", f"/ws?token={REDACTED}"),
        ("/ws?ACCESS_TOKEN=abc&Id=7", f"/ws?ACCESS_TOKEN={REDACTED}&Id={REDACTED}"),
        ("/ws?access_token=a=b=c&x=1", f"/ws?access_token={REDACTED}&x=1"),
        ("/ws?access_token=&x=1", f"/ws?access_token={REDACTED}&x=1"),
        ("/ws?access_token=one&access_token=two", f"/ws?access_token={REDACTED}&access_token={REDACTED}"),
    ],
)
def test_secret_query_values_are_replaced(raw: str, expected: str) -> None:
    assert redact(rel_url(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "/healthz",
        "/p%20ath/%E2%82%AC",
        "/ws/partner?restaurantId=r1",
        "/ws?x=%E2%82%AC+y;z&&b&c=",
        "/ws?my_access_token=keep&idx=keep&tokens=keep&restaurantId=keep",
        "/ws?access_token&id",  # a name without "=" carries no value
    ],
)
def test_urls_without_secret_values_are_kept_byte_for_byte(raw: str) -> None:
    assert redact(rel_url(raw)) == raw


def test_everything_around_a_secret_is_kept_byte_for_byte() -> None:
    raw = f"/p%20q/partnerhub?a=1&&b&id=x%2By&restaurantId=r%2F1&access_token={JWT}&x=%E2%82%AC+y;z&c="
    redacted = redact(rel_url(raw))
    assert (
        redacted
        == f"/p%20q/partnerhub?a=1&&b&id={REDACTED}&restaurantId=r%2F1&access_token={REDACTED}&x=%E2%82%AC+y;z&c="
    )
    assert JWT not in redacted


def test_percent_encoded_access_token_name_is_redacted_too() -> None:
    url = rel_url(f"/ws/partner?restaurantId=r1&access%5Ftoken={JWT}")
    assert url.query["access_token"] == JWT  # request.query decodes the name: the server accepts this token...
    assert JWT not in redact(url)  # ...so the log must not show it


# -- the middleware ---------------------------------------------------------------------------------


async def test_middleware_logs_method_redacted_url_and_status(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=401)

    request = make_mocked_request("POST", f"/partnerhub/negotiate?restaurantId=r1&access_token={JWT}")
    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        response = await access_log(request, handler)

    assert response.status == 401
    [record] = [r for r in caplog.records if r.name == "partner_stream.access"]
    assert record.levelno == logging.INFO  # a refused tablet is worth a line
    message = record.getMessage()
    assert message.startswith(f"POST /partnerhub/negotiate?restaurantId=r1&access_token={REDACTED} 401 ")
    assert JWT not in message


async def test_middleware_logs_http_exception_status_and_reraises(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    request = make_mocked_request("GET", f"/nope?token={JWT}")
    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"), pytest.raises(web.HTTPNotFound):
        await access_log(request, handler)

    [record] = [r for r in caplog.records if r.name == "partner_stream.access"]
    assert f"GET /nope?token={REDACTED} 404 " in record.getMessage()
    assert JWT not in record.getMessage()


async def test_middleware_logs_probes_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        await access_log(make_mocked_request("GET", "/healthz"), handler)

    [record] = [r for r in caplog.records if r.name == "partner_stream.access"]
    assert record.levelno == logging.DEBUG


async def test_middleware_logs_accepted_tablet_handshakes_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        await access_log(make_mocked_request("POST", f"/partnerhub/negotiate?access_token={JWT}"), handler)
        await access_log(make_mocked_request("GET", "/api/cluster"), handler)

    levels = [r.levelno for r in caplog.records if r.name == "partner_stream.access"]
    assert levels == [logging.DEBUG, logging.INFO]
