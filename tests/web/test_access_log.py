"""The access log never prints a token: web.access_log.redact and the access logger, without a server."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from partner_stream_web.access_log import (
    REDACTED,
    ClientErrorsWithoutTraceback,
    RedactingAccessLogger,
    quiet_client_errors,
    redact,
)
from partner_stream_web.access_log import log as access_log
from tests.support.local_http import served

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyZXN0YXVyYW50SWQiOiJyMSJ9.c2lnbmF0dXJl"


def rel_url(raw: str) -> URL:
    """The URL as aiohttp's HTTP parser hands it to the access logger: built with encoded=True, never re-quoted.

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
        "/ws?idx=keep&restaurantId=keep&negotiateVersion=1&orderId=eyJ-not-a-jwt",
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


@pytest.mark.parametrize(
    "name", ["accessToken", "acces_token", "my_access_token", "tokens", "jwt", "Authorization", "apiKey", "secret"]
)
def test_a_misspelled_or_unusual_secret_parameter_is_redacted(name: str) -> None:
    """The probe found tokens sent under misspelled names in clear in the log."""
    assert redact(rel_url(f"/ws/partner?restaurantId=r1&{name}=s3cr3t-value")) == (
        f"/ws/partner?restaurantId=r1&{name}={REDACTED}"
    )


def test_a_jwt_under_any_parameter_name_is_redacted() -> None:
    redacted = redact(rel_url(f"/ws/partner?restaurantId=r1&t={JWT}&q={JWT.replace('.', '%2E')}"))
    assert redacted == f"/ws/partner?restaurantId=r1&t={REDACTED}&q={REDACTED}"


def test_a_long_url_is_cut_so_a_request_cannot_write_kilobytes_of_log() -> None:
    logged = redact(rel_url("/api/worker?restaurantId=" + "x" * 8000))
    assert len(logged) < 400 and logged.endswith("more characters]")


def test_percent_encoded_access_token_name_is_redacted_too() -> None:
    url = rel_url(f"/ws/partner?restaurantId=r1&access%5Ftoken={JWT}")
    assert url.query["access_token"] == JWT  # request.query decodes the name: the server accepts this token...
    assert JWT not in redact(url)  # ...so the log must not show it


# -- the access logger ------------------------------------------------------------------------------


def log_request(method: str, path: str, status: int) -> None:
    """What aiohttp's RequestHandler does once a response is done."""
    logger = RedactingAccessLogger(access_log, "")
    if logger.enabled:
        logger.log(make_mocked_request(method, path), web.Response(status=status), 0.0123)


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "partner_stream.access"]


def test_logs_method_redacted_url_status_and_time(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        log_request("POST", f"/partnerhub/negotiate?restaurantId=r1&access_token={JWT}", 401)

    [record] = access_records(caplog)
    assert record.levelno == logging.INFO  # a refused tablet is worth a line
    message = record.getMessage()
    assert message == f"POST /partnerhub/negotiate?restaurantId=r1&access_token={REDACTED} 401 12.3ms"
    assert JWT not in message


def test_logs_probes_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        log_request("GET", "/healthz", 200)

    [record] = access_records(caplog)
    assert record.levelno == logging.DEBUG


def test_logs_accepted_tablet_handshakes_at_debug_and_other_requests_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="partner_stream.access"):
        log_request("POST", f"/partnerhub/negotiate?access_token={JWT}", 200)
        log_request("GET", "/api/cluster", 200)
        log_request("GET", "/nope", 404)

    assert [r.levelno for r in access_records(caplog)] == [logging.DEBUG, logging.INFO, logging.INFO]


def test_disabled_below_info_so_aiohttp_skips_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="partner_stream.access"):
        assert not RedactingAccessLogger(access_log, "").enabled
    with caplog.at_level(logging.INFO, logger="partner_stream.access"):
        assert RedactingAccessLogger(access_log, "").enabled


async def test_a_real_server_logs_http_exceptions_with_their_status(caplog: pytest.LogCaptureFixture) -> None:
    async def not_found(_: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_get("/nope", not_found)
    with caplog.at_level(logging.INFO, logger="partner_stream.access"):
        async with (
            served(app, access_log=access_log, access_log_class=RedactingAccessLogger) as base_url,
            aiohttp.ClientSession() as session,
            session.get(f"{base_url}/nope?token={JWT}") as response,
        ):
            assert response.status == 404

    [record] = access_records(caplog)
    assert record.getMessage().startswith(f"GET /nope?token={REDACTED} 404 ")


def test_a_malformed_request_is_one_info_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp logs a request it cannot parse as ERROR with a traceback: anyone could fill the log with them."""
    logger = logging.getLogger("aiohttp.server")
    quiet_client_errors()
    quiet_client_errors()  # idempotent
    assert sum(isinstance(f, ClientErrorsWithoutTraceback) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        try:
            raise LineTooLong("x" * 9000, "8190")
        except LineTooLong:
            logger.exception("Error handling request from %s", "127.0.0.1")
        try:
            raise RuntimeError("a real bug")
        except RuntimeError:
            logger.exception("Error handling request from %s", "127.0.0.1")
    client_error, server_error = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert client_error.levelno == logging.INFO and client_error.exc_info is None
    assert "127.0.0.1" in client_error.getMessage() and "400" in client_error.getMessage()
    assert len(client_error.getMessage()) < 400
    assert server_error.levelno == logging.ERROR and server_error.exc_info is not None
