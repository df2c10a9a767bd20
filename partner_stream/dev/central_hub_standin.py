"""A stand-in for CentralHub / OrderService, so ``partner-stream dev`` shows the whole loop. Dev only.

In production the board's Accept and Reject buttons call CentralHub, whose OrderService
publishes ``OrderAccepted`` / ``OrderRejected`` to Kafka; the stream then removes the card.
This module plays that part on the worker's own web server:

``POST /api/orders/{order_id}/accept`` with ``{"restaurantId": "42"}`` and
``POST /api/orders/{order_id}/reject`` with ``{"restaurantId": "42", "reason": "..."}``,
both with ``Authorization: Bearer <tablet token>``: the token must be valid and name that
restaurant (401/403 with a JSON ``error`` otherwise), then the event is published in the
OrderService's PascalCase JSON by :class:`partner_stream.dev.samples.OrderPublisher`, and the
answer is ``202`` (the card leaves when the event comes back through the stream).

It cannot be switched on outside dev: it installs only when ``PARTNER_STREAM_DEV_STACK=1``
**and** the broker profile is ``embedded`` (the in-memory Tansu broker), and
:func:`install_central_hub_standin` refuses to run otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from partner_stream_web.auth import AuthError, TokenVerifier, token_from_request
from partner_stream_web.cors import CorsPolicy
from partner_stream_web.errors import Refusal

from ..settings import BrokerProfile, Settings
from .samples import OrderPublisher

log = logging.getLogger(__name__)

#: The dev stack's one switch (``Settings.dev_stack`` reads it too): set by ``partner-stream dev`` only.
ENV_FLAG = "PARTNER_STREAM_DEV_STACK"
ROUTE = "/api/orders/{order_id}/{action:accept|reject}"
MAX_ID_LENGTH = 200
MAX_REASON_LENGTH = 500


def standin_enabled(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """True only in the dev stack: the flag is set to 1 and the broker is the embedded one."""
    env = os.environ if environ is None else environ
    return env.get(ENV_FLAG, "").strip() == "1" and settings.broker_profile is BrokerProfile.EMBEDDED


class CentralHubStandin:
    """The two endpoints, the token check and a lazily started Kafka producer."""

    def __init__(self, settings: Settings, publisher: OrderPublisher | None = None) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings)
        self.cors = CorsPolicy(settings.cors_origins)
        self._publisher = publisher
        self._started = False
        self._lock = asyncio.Lock()

    def install(self, web_app: web.Application) -> None:
        web_app.router.add_post(ROUTE, self.handle)
        web_app.router.add_route("OPTIONS", ROUTE, self.preflight)
        web_app.on_cleanup.append(self.close)

    async def publisher(self) -> OrderPublisher:
        """The producer, created and started on first use (it needs a running loop and a reachable broker)."""
        async with self._lock:
            if self._publisher is None:
                self._publisher = OrderPublisher(self.settings)
            if not self._started:
                await self._publisher.__aenter__()
                self._started = True
            return self._publisher

    async def close(self, _: web.Application | None = None) -> None:
        """Stop the producer; safe to call twice (Faust cleans the aiohttp app up twice)."""
        async with self._lock:
            if self._started and self._publisher is not None:
                self._started = False
                await self._publisher.__aexit__(None, None, None)

    # -- HTTP ---------------------------------------------------------------------------------

    def _error(self, request: web.Request, status: HTTPStatus, reason: str) -> web.Response:
        return Refusal(status, reason).response(self.cors.headers(request))

    async def preflight(self, request: web.Request) -> web.Response:
        return self.cors.preflight(request, "POST, OPTIONS")

    async def handle(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"].strip()
        action = request.match_info["action"]
        if not order_id or len(order_id) > MAX_ID_LENGTH:
            return self._error(request, HTTPStatus.BAD_REQUEST, "the order id in the path is empty or too long")
        try:
            body = _json_object(await request.read())
            restaurant_id = _restaurant_id(body)
            reason = _reason(body) if action == "reject" else None
        except ValueError as exc:
            return self._error(request, HTTPStatus.BAD_REQUEST, str(exc))
        try:
            identity = self.verifier.tablet(token_from_request(request), restaurant_id)
        except AuthError as exc:
            return self._error(request, exc.status, exc.reason)
        try:
            publisher = await self.publisher()
            if action == "accept":
                await publisher.accept(order_id, identity.restaurant_id)
            else:
                await publisher.reject(order_id, identity.restaurant_id, reason)
        except Exception as exc:  # the broker is down or the topic is unknown: say so, do not crash the worker
            log.warning("CentralHub stand-in could not publish %s of %s: %r", action, order_id, exc)
            return self._error(request, HTTPStatus.SERVICE_UNAVAILABLE, f"could not publish the event: {exc}")
        log.info("CentralHub stand-in: %s order %s of restaurant %s", action, order_id, identity.restaurant_id)
        outcome = "accepted" if action == "accept" else "rejected"
        answer = {"orderId": order_id, "restaurantId": identity.restaurant_id, "status": outcome}
        return web.json_response(answer, status=int(HTTPStatus.ACCEPTED), headers=self.cors.headers(request))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        raise ValueError("the body must be JSON") from None
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object like {"restaurantId": "42"}')
    return body


def _restaurant_id(body: dict[str, Any]) -> str:
    value = body.get("restaurantId")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("'restaurantId' is required: a non-empty string or an integer")
    return value.strip()


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"'reason' must be a string of at most {MAX_REASON_LENGTH} characters")
    return reason.strip() or None


def install_central_hub_standin(
    web_app: web.Application, settings: Settings, publisher: OrderPublisher | None = None
) -> CentralHubStandin:
    """Add the dev-only accept/reject endpoints; refuses unless :func:`standin_enabled`.

    ``publisher`` defaults to an :class:`OrderPublisher` built on first use; either way it is
    started on the first request and stopped when the aiohttp app is cleaned up.
    """
    if not standin_enabled(settings):
        raise RuntimeError(
            f"the CentralHub stand-in is dev-only: it needs {ENV_FLAG}=1 and the embedded broker profile"
        )
    standin = CentralHubStandin(settings, publisher)
    standin.install(web_app)
    log.warning(
        "DEV ONLY: CentralHub stand-in enabled: POST /api/orders/{id}/accept|reject publish to %s / %s",
        settings.topic_order_accepted,
        settings.topic_order_rejected,
    )
    return standin
