"""HTTP views: operator API (operator token), tablet endpoint lookup, probes and metrics.

Per-restaurant views are answered by the worker that owns the key (Faust's
``table_route``: any worker forwards). Cluster-wide views fan out to every worker's
``/api/worker/...`` views and merge. Operators authenticate with a JWT whose ``role``
claim is ``operator``; tablet tokens are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import aiohttp
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from partner_stream.app import app, pending_orders, settings
from partner_stream.durations import parse_duration
from partner_stream.events import restaurant_id_problem
from partner_stream_tables.queries import snapshot_payload, unseen_orders

from . import site
from .auth import AuthError, TokenVerifier, operator_token_from_request, token_from_request
from .errors import Refusal
from .ownership import (
    internal_url,
    locate,
    not_ready_reason,
    owner_url,
    owners,
    owns_partition,
    public_url,
    recovery_state,
    worker_ready,
)
from .placement import OwnerUnreachable, Placement

# Faust resolves its web driver when the first view below is declared: ours must be registered by then.
site.register()
verifier = TokenVerifier(settings)


class _Tablets:
    """This worker's tablet hub and relay, handed over by the composition root (partner_stream/service.py)."""

    hub: Any = None
    relay: Any = None


tablets = _Tablets()


def serve_tablets(hub: Any, relay: Any) -> None:
    """Let the views report this worker's tablets (the hub is built after the views are declared)."""
    tablets.hub, tablets.relay = hub, relay


def error(view: View, status: HTTPStatus, message: str) -> Response:
    """A :class:`web.errors.Refusal` as a Faust view's response."""
    refusal = Refusal(status, message)
    return view.json(refusal.body(), status=int(status), headers=refusal.headers() or None)


def operator_refusal(view: View, request: Request) -> Response | None:
    """None if the request carries a valid operator token, else the 401/403 to return."""
    try:
        verifier.operator(operator_token_from_request(request))
    except AuthError as exc:
        return error(view, exc.status, exc.reason)
    return None


def unaddressable(view: View, restaurant_id: str | None) -> Response | None:
    """400 for an ID no restaurant can have (the event contract's rule): it never reaches routing or a cache."""
    problem = restaurant_id_problem(restaurant_id) if restaurant_id is not None else None
    return error(view, HTTPStatus.BAD_REQUEST, problem) if problem is not None else None


def not_ready(view: View) -> Response:
    reason = not_ready_reason() or "this worker is recovering its partitions"
    return error(view, HTTPStatus.SERVICE_UNAVAILABLE, reason)


# -- per restaurant, answered by the owner ---------------------------------------------------


async def from_owner(view: View, restaurant_id: str, answer: Callable[[], Awaitable[Response]]) -> Response:
    """The owner's answer (``table_route`` forwards to it), or 503 + Retry-After when it cannot be reached.

    Before the first assignment (a worker starting) Faust's router has no owner to name and raises from
    deep inside aiokafka; during a failover the assignment can still name a worker that just died. Both
    are a moment to retry, not a server error.
    """
    if owner_url(restaurant_id) is None:
        return error(
            view,
            HTTPStatus.SERVICE_UNAVAILABLE,
            "the restaurant's partition is not assigned yet (the worker is starting or rebalancing); retry shortly",
        )
    try:
        return await answer()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return error(
            view,
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the restaurant's worker is unreachable (failing over?): {type(exc).__name__}; retry shortly",
        )


class OwnerAnsweredView(View):
    """An operator read about one restaurant: checked here, answered by ``owner_answer`` on its owner."""

    async def get(self, request: Request, restaurant_id: str) -> Response:
        refusal = unaddressable(self, restaurant_id) or operator_refusal(self, request)
        return refusal or await from_owner(self, restaurant_id, lambda: self.owner_answer(request, restaurant_id))

    async def owner_answer(self, request: Request, restaurant_id: str) -> Response:
        raise NotImplementedError


@app.page("/api/restaurants/{restaurant_id}/pending-orders")
class RestaurantPendingOrders(OwnerAnsweredView):
    """A restaurant's pending orders and ``seq`` (operator token), from the worker that owns it."""

    @app.table_route(table=pending_orders, match_info="restaurant_id")
    async def owner_answer(self, request: Request, restaurant_id: str) -> Response:
        if not worker_ready():
            return not_ready(self)
        return self.json(snapshot_payload(pending_orders.state_of(restaurant_id)))


@app.page("/api/restaurants/{restaurant_id}/connections")
class RestaurantConnections(OwnerAnsweredView):
    """The restaurant's tablets connected to its owner: since when, last acknowledgement."""

    @app.table_route(table=pending_orders, match_info="restaurant_id")
    async def owner_answer(self, request: Request, restaurant_id: str) -> Response:
        connected = [c.describe() for c in tablets.hub.connections(restaurant_id)]
        return self.json({"restaurantId": restaurant_id, "worker": str(public_url()), "connections": connected})


@app.page("/api/restaurants/{restaurant_id}/endpoint")
class RestaurantEndpoint(View):
    """Where a tablet of this restaurant should connect (its tablet token, or an operator token)."""

    async def get(self, request: Request, restaurant_id: str) -> Response:
        refusal = unaddressable(self, restaurant_id)
        if refusal is not None:
            return refusal
        try:
            token = token_from_request(request)
            claims = verifier.verify(token)
            if claims.get("role") != settings.operator_role:
                verifier.tablet(token, restaurant_id)
            elif "Authorization" not in request.headers:
                # As on every operator view: a query token ends up in proxies' logs.
                raise AuthError(HTTPStatus.UNAUTHORIZED, "operator tokens go in 'Authorization: Bearer', not the query")
        except AuthError as exc:
            return error(self, exc.status, exc.reason)
        owner = locate(restaurant_id)
        if owner.placement is Placement.UNAVAILABLE:
            return error(self, HTTPStatus.SERVICE_UNAVAILABLE, owner.reason or "unavailable")
        try:
            base = (
                public_url() if owner.placement is Placement.LOCAL else await owners.confirm(owner.url, restaurant_id)
            )  # type: ignore[arg-type]
        except OwnerUnreachable as exc:
            return error(self, HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        ws_base = base.with_scheme("wss" if base.scheme == "https" else "ws")
        query = {"restaurantId": restaurant_id}
        return self.json(
            {
                "restaurantId": restaurant_id,
                "worker": str(base),
                "signalr": str(base.with_path("/partnerhub").with_query(query)),
                "plain": str(ws_base.with_path("/ws/partner").with_query(query)),
            }
        )


# -- this worker -----------------------------------------------------------------------------


def local_status() -> dict[str, Any]:
    hub = tablets.hub
    topic = pending_orders.changelog_topic.get_topic_name()
    recovery = app.tables.recovery
    by_protocol: dict[str, int] = {}
    for connection in hub.connections():
        by_protocol[connection.protocol] = by_protocol.get(connection.protocol, 0) + 1
    return {
        "internalUrl": str(internal_url()),
        "publicUrl": str(public_url()),
        "ready": worker_ready(),
        **recovery_state(),
        "activePartitions": sorted(tp.partition for tp in recovery.active_tps if tp.topic == topic),
        "standbyPartitions": sorted(tp.partition for tp in recovery.standby_tps if tp.topic == topic),
        "connections": sum(by_protocol.values()),
        "connectionsByProtocol": by_protocol,
        "relayedConnections": tablets.relay.active,
        "restaurantsConnected": len(hub.restaurants()),
    }


@app.page("/api/worker")
class WorkerIdentity(View):
    """Public facts about this worker; other workers ask it whether it serves a restaurant before steering tablets."""

    async def get(self, request: Request) -> Response:
        body: dict[str, Any] = {
            "internalUrl": str(internal_url()),
            "publicUrl": str(public_url()),
            "ready": worker_ready(),
        }
        restaurant_id = request.query.get("restaurantId")
        refusal = unaddressable(self, restaurant_id)
        if refusal is not None:
            return refusal
        if restaurant_id:
            body["servesRestaurant"] = locate(restaurant_id).placement is Placement.LOCAL
        return self.json(body)


@app.page("/api/worker/status")
class WorkerStatus(View):
    """This worker's partitions, recovery state and connections (operator token)."""

    async def get(self, request: Request) -> Response:
        return operator_refusal(self, request) or self.json(local_status())


def local_unseen(older_than: float) -> list[dict[str, Any]]:
    cutoff = time.time() - older_than
    found = []
    # Standby copies are skipped: their owners report them.
    for order in unseen_orders(pending_orders.pending_orders(owned=owns_partition)):
        if order.created_at.timestamp() <= cutoff:
            found.append(
                {
                    **order.model_dump(mode="json", by_alias=True),
                    "ageSeconds": round(time.time() - order.created_at.timestamp(), 1),
                }
            )
    return found


@app.page("/api/worker/unseen")
class WorkerUnseen(View):
    """Unacknowledged pending orders in this worker's partitions (operator token)."""

    async def get(self, request: Request) -> Response:
        refusal = operator_refusal(self, request)
        if refusal:
            return refusal
        try:
            older_than = parse_duration(request.query.get("older_than", "60s"))
        except ValueError as exc:
            return error(self, HTTPStatus.BAD_REQUEST, str(exc))
        if pending_orders.storage_failure is not None:
            return not_ready(self)  # a partition database may be closed: no list can be trusted
        return self.json({"orders": local_unseen(older_than)})


# -- the cluster -----------------------------------------------------------------------------


def known_workers() -> list[URL]:
    """Every worker the assignment knows, plus this one (internal URLs)."""
    urls = {f"{internal_url().host}:{internal_url().port}": internal_url()}
    try:
        metadata = app.router.table_metadata(pending_orders.name)
    except (KeyError, AttributeError):
        metadata = {}
    for raw in metadata:
        url = URL(raw)
        urls.setdefault(f"{url.host}:{url.port}", url)
    return list(urls.values())


async def fan_out(request: Request, path: str) -> list[dict[str, Any]]:
    """GET ``path`` on every worker with the caller's operator token; unreachable ones are reported."""
    headers = {"Authorization": request.headers.get("Authorization", "")}
    timeout = aiohttp.ClientTimeout(total=5)

    async def one(session: aiohttp.ClientSession, worker: URL) -> dict[str, Any]:
        try:
            async with session.get(worker.with_path(path).with_query(request.query), headers=headers) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    return {"internalUrl": str(worker), "error": body.get("error", f"HTTP {response.status}")}
                return {"internalUrl": str(worker), **body}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return {"internalUrl": str(worker), "error": f"unreachable: {exc or type(exc).__name__}"}

    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(one(session, w) for w in known_workers())))


@app.page("/api/cluster")
class Cluster(View):
    """Every worker: URLs, partitions (active/standby), recovery state, connection counts (operator token)."""

    async def get(self, request: Request) -> Response:
        refusal = operator_refusal(self, request)
        if refusal:
            return refusal
        workers = await fan_out(request, "/api/worker/status")
        return self.json({"workers": sorted(workers, key=lambda w: w["internalUrl"])})


@app.page("/api/orders/unseen")
class UnseenOrders(View):
    """Pending orders no tablet has acknowledged for ``older_than`` (default 60s): the never-saw-it alarm."""

    async def get(self, request: Request) -> Response:
        refusal = operator_refusal(self, request)
        if refusal:
            return refusal
        try:
            parse_duration(request.query.get("older_than", "60s"))
        except ValueError as exc:
            return error(self, HTTPStatus.BAD_REQUEST, str(exc))
        answers = await fan_out(request, "/api/worker/unseen")
        orders = [order for answer in answers for order in answer.get("orders", [])]
        failed = [{"worker": a["internalUrl"], "error": a["error"]} for a in answers if "error" in a]
        orders.sort(key=lambda o: o["createdAt"])
        return self.json({"orders": orders, "incompleteBecause": failed}, status=200 if not failed else 206)


# -- probes and metrics ----------------------------------------------------------------------


@app.page("/healthz")
class Health(View):
    """Liveness: the process and its event loop answer."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "alive"})


@app.page("/readyz")
class Readiness(View):
    """Readiness: 200 only when this worker's partitions are assigned and recovered."""

    async def get(self, request: Request) -> Response:
        ready = worker_ready()
        body: dict[str, Any] = {"ready": ready, **recovery_state()}
        if not ready:
            body["reason"] = not_ready_reason()
        return self.json(body, status=200 if ready else 503)


@app.page("/metrics")
class Metrics(View):
    """Prometheus exposition of this worker's metrics."""

    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
