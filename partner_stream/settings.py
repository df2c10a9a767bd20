"""Service settings, read once from the environment.

Every variable is prefixed ``PARTNER_STREAM_``. The app passes the same prefix to
Faust (``env_prefix``), so Faust's own settings are read from the same namespace
(``PARTNER_STREAM_BROKER_URL``, ``PARTNER_STREAM_WEB_PORT`` …) and a stray bare
``BROKER_URL`` in a shell can never silently redirect the service.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PARTNER_STREAM_"


class BrokerProfile(StrEnum):
    """Which kind of broker the worker talks to.

    ``kafka`` is a real Apache Kafka cluster and keeps Faust's stock settings.
    ``embedded`` is the Tansu broker that ``partner-stream broker``/``dev`` and the
    tests run; it needs workarounds that must never reach a real cluster.
    """

    KAFKA = "kafka"
    EMBEDDED = "embedded"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    app_id: str = Field("partner-stream", description="Faust app id: consumer group and topic prefix.")
    broker_url: str = Field("kafka://localhost:9092", description="Kafka bootstrap URL(s), ';'-separated.")
    broker_profile: BrokerProfile = Field(
        BrokerProfile.KAFKA, description="`kafka` for a real cluster, `embedded` for the bundled Tansu broker."
    )
    topic_order_created: str = "order-created"
    topic_order_accepted: str = "order-accepted"
    topic_order_rejected: str = "order-rejected"
    topic_dead_letter: str = Field("order-events-dlq", description="Where undecodable events go, with the reason.")
    topic_partitions: int = Field(
        8, ge=1, description="Partitions of the internal re-key topic and the table changelog."
    )
    table_standby_replicas: int = Field(
        1, ge=0, description="Warm copies of each table partition on other workers (faster failover)."
    )
    app_datadir: Path = Field(
        Path("partner-stream-data"), description="Local RocksDB state (rebuilt from the changelog)."
    )
    web_bind: str = Field("0.0.0.0", description="Interface the HTTP/WebSocket server binds.")
    web_port: int = Field(5003, ge=1, le=65535)
    web_host: str | None = Field(
        None, description="Host name other workers use to reach this one (Faust default: this machine's hostname)."
    )
    fetch_max_wait_ms: int | None = Field(
        None,
        ge=0,
        description="Consumer fetch long-poll wait. Unset: Faust's 1500 ms (right for Kafka). Embedded profile: 5 ms.",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once",
        description="Faust's processing guarantee. `exactly_once` (Apache Kafka only: it needs transactions) "
        "also fences a cut-off worker's writes through transactional producer epochs.",
    )
    fence_fraction: float = Field(
        0.75,
        gt=0,
        le=1,
        description="Fence this worker (close its tablets, answer 503) once no heartbeat reached the group "
        "coordinator for this fraction of the session timeout.",
    )
    disk_low_free_mb: int = Field(
        512, ge=0, description="Warn (once per episode) when the data dir's filesystem has less free space (MiB)."
    )
    resolved_memory: int = Field(
        500, ge=1, description="Resolved order ids remembered per restaurant, so late duplicates stay resolved."
    )

    public_url: str | None = Field(
        None,
        description="URL tablets use to reach this worker (behind proxies or in containers it differs from the "
        "internal one). Default: the internal URL, http://WEB_HOST:WEB_PORT.",
    )
    operator_role: str = Field("operator", description="Value of the `role` claim that makes a JWT an operator token.")

    # --- tablet hub ---------------------------------------------------------------
    jwt_secret: str | None = Field(
        None, description="HS256 secret that signs tablet tokens. Set this or jwt_public_key; unset: hub refuses all."
    )
    jwt_public_key: str | None = Field(
        None, description="PEM public key (or a path to one) for RS256/ES256 tablet tokens."
    )
    jwt_algorithms: list[str] = Field(
        default_factory=lambda: ["HS256", "RS256", "ES256"], description="Accepted JWT algorithms."
    )
    jwt_audience: str | None = Field(None, description="Required `aud` claim, if set.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, if set.")
    jwt_restaurant_claim: str = Field("restaurantId", description="Claim that names the tablet's restaurant.")
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Origins allowed to negotiate cross-origin (and to open sockets); `*` reflects any origin.",
    )
    hub_ping_interval: float = Field(10.0, gt=0, description="Seconds between server pings (SignalR needs <= 15).")
    hub_client_timeout: float = Field(30.0, gt=0, description="Close a socket silent for this many seconds.")
    hub_queue_size: int = Field(
        256, ge=8, description="Outbound messages buffered per socket; a tablet further behind is told to resync."
    )
    hub_max_message_bytes: int = Field(64 * 1024, ge=1024, description="Largest WebSocket frame accepted.")

    @model_validator(mode="after")
    def _transactions_need_kafka(self) -> Settings:
        if self.embedded and self.processing_guarantee == "exactly_once":
            raise ValueError("exactly_once needs Kafka transactions, which the embedded broker does not have")
        return self

    @property
    def embedded(self) -> bool:
        return self.broker_profile is BrokerProfile.EMBEDDED

    @property
    def effective_fetch_max_wait_ms(self) -> int | None:
        """The fetch wait to force on the worker consumer, or None for Faust's default."""
        if self.fetch_max_wait_ms is not None:
            return self.fetch_max_wait_ms
        return EMBEDDED_FETCH_MAX_WAIT_MS if self.embedded else None


#: Tansu's fetch does not wake on produce, so the long poll is pure latency; 5 ms
#: measured best on a 2-core machine (latency vs. idle polling CPU).
EMBEDDED_FETCH_MAX_WAIT_MS = 5


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
