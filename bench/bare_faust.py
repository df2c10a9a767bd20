"""The framework's own floor for the drain scenario: a bare Faust agent that writes one table key per event.

The same Faust, store (RocksDB via rocksdict) and embedded-broker settings as a partner-stream worker (the
short session timeout; producer batches as Faust makes them, which the worker does too since its recovery reads
a changelog's true end on Tansu; a stock Faust agent could not restart on that broker with them, but the
drain never restarts it), the same three upstream topics; nothing else. Until 2026-12-05 (third session) both
sent one record per batch (``producer_max_batch_size=1``). It
answers ``GET /count`` with the events it consumed, so the bench measures it exactly as it measures a worker, and
``GET /readyz`` with 200 once its consumer has partitions.

    faust -A bench.bare_faust worker -l info      (the bench starts it: bench/procs.py bare_faust)
"""

from __future__ import annotations

import os

import faust
from aiohttp.web import Request, Response
from faust.transport.drivers import aiokafka as faust_aiokafka

#: partner_stream.app.embedded_broker_overrides(), copied: importing that module would build the worker's app here.
EMBEDDED_BROKER_OVERRIDES = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 10.0,
}
app = faust.App(
    os.environ.get("BARE_APP_ID", "bench-bare"),
    broker=os.environ["BARE_BROKER_URL"],
    store="rocksdb://",
    datadir=os.environ["BARE_DATADIR"],
    topic_partitions=8,
    web_port=int(os.environ["BARE_WEB_PORT"]),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    consumer_auto_offset_reset="earliest",
    autodiscover=False,
    **EMBEDDED_BROKER_OVERRIDES,
)


def _fetch_with_a_short_wait(wait_ms: int) -> None:
    """Faust hard-codes a 1.5 s fetch wait; on Tansu, whose fetch does not wake on new data, that is pure latency.

    ``BARE_FETCH_MAX_WAIT_MS`` gives the agent the wait a latency-bound worker needs (partner-stream's embedded
    profile: 5 ms while records flow), so its cost per event is what such a worker pays, not the cheapest."""
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: faust_aiokafka.AIOKafkaConsumerThread, transport: object) -> object:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = wait_ms  # read by each Fetch request aiokafka builds
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


if os.environ.get("BARE_FETCH_MAX_WAIT_MS"):
    _fetch_with_a_short_wait(int(os.environ["BARE_FETCH_MAX_WAIT_MS"]))

upstream = app.topic(
    *os.environ.get("BARE_TOPICS", "order-created,order-accepted,order-rejected").split(","),
    key_serializer="raw",
    value_serializer="raw",
)


class RawTable(faust.Table):
    """Raw bytes in and out, as partner-stream's table (its changelog topic is built from these)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = "raw"


last_value = app.tables.add(RawTable(app, name="last-value", partitions=8, beacon=app.tables.beacon))
consumed = 0


@app.agent(upstream)
async def write_one_key_per_event(stream: faust.StreamT) -> None:
    global consumed
    async for event in stream.events():
        last_value[event.key] = event.value
        consumed += 1


@app.page("/count")
async def count(web: faust.web.Web, request: Request) -> Response:
    return web.json({"consumed": consumed})


@app.page("/readyz")
async def readyz(web: faust.web.Web, request: Request) -> Response:
    ready = bool(app.consumer.assignment())
    return web.json({"ready": ready, "consumed": consumed}, status=200 if ready else 503)
