"""A Faust Kafka transport whose worker consumer uses a configurable fetch max wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer
(``faust/transport/drivers/aiokafka.py``). That is harmless on Apache Kafka,
whose long poll returns as soon as data arrives, but the embedded Tansu broker
only re-polls after sleeping half the remaining wait, so every hop costs up to
0.75 s. This transport is registered under its own URL scheme and used only for
the consumer (``broker_consumer``) when a wait is configured; producers and
every other setting stay stock Faust.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from yarl import URL

SCHEME = "partner-kafka"
_KAFKA_SCHEMES = {"kafka", "aiokafka"}


class TunedFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # aiokafka reads this attribute when the consumer starts and builds its Fetcher.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class TunedFetchConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedFetchConsumerThread:
        return TunedFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedFetchTransport(faust_aiokafka.Transport):
    Consumer = TunedFetchConsumer


def register() -> None:
    """Register the scheme with Faust's transport registry (a "module:Class" string)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:TunedFetchTransport"


def consumer_urls(broker_urls: list[str]) -> list[str]:
    """The broker URLs with Kafka schemes switched to the tuned transport."""
    tuned = []
    for raw in broker_urls:
        url = URL(raw if "://" in raw else f"kafka://{raw}")
        tuned.append(str(url.with_scheme(SCHEME)) if url.scheme in _KAFKA_SCHEMES else raw)
    return tuned
