"""Service settings, read once from the environment.

Every variable is prefixed ``PARTNER_STREAM_``. The app passes the same prefix to
Faust (``env_prefix``), so Faust's own settings are read from the same namespace
(``PARTNER_STREAM_BROKER_URL``, ``PARTNER_STREAM_WEB_PORT`` …) and a stray bare
``BROKER_URL`` in a shell can never silently redirect the service.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from .durations import parse_duration
from .events import MAX_UNSEEN_STEP


def parse_unseen_after(text: str) -> tuple[float, ...]:
    """``"60s,5m"`` -> (60.0, 300.0): at least one duration of 1 s or more, strictly ascending."""
    thresholds = tuple(parse_duration(part) for part in text.split(","))
    if len(thresholds) > MAX_UNSEEN_STEP:
        raise ValueError(f"at most {MAX_UNSEEN_STEP} steps, not {len(thresholds)}")
    if thresholds[0] < 1.0:
        raise ValueError("the first step must be at least 1s")
    if any(later <= earlier for earlier, later in itertools.pairwise(thresholds)):
        raise ValueError("steps must be strictly ascending, e.g. 60s,5m,15m")
    return thresholds


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
    topic_order_seen: str = Field("order-seen", description="Where OrderSeen is published (an order's first ack).")
    topic_order_unseen: str = Field(
        "order-unseen", description="Where OrderUnseen is published (an order no tablet showed in time)."
    )
    unseen_after: str = Field(
        "60s",
        description="Announce OrderUnseen when an order is still unacknowledged this long after CreatedAt; a "
        "comma-separated list (e.g. `60s,5m`) adds escalation steps.",
    )
    unseen_arrival_grace: float = Field(
        10.0,
        ge=0,
        le=600,
        description="After this worker is handed partitions, wait this many seconds for tablets to reconnect before "
        "announcing an order's arrival with no tablet connected.",
    )
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
        description="Consumer fetch long-poll wait. Unset: Faust's 1500 ms (right for Kafka); embedded profile: 5 ms "
        "while records flow, 50 ms once idle. Set, it is fixed.",
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
    fence_restart_after: float = Field(
        120.0,
        ge=5,
        description="A worker fenced this long without rejoining the group and rebuilding its table empties its "
        "partition stores and exits with code 1, for its supervisor to restart it; the restart rebuilds its table "
        "from the changelog.",
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
        default_factory=list,
        description="Origins besides the worker's own that may call it from a browser (negotiate, sockets). "
        "Listed origins get credentialed CORS; `*` admits any origin, without credentials. Empty: same origin only.",
    )
    dev_stack: bool = Field(
        False,
        description="Set by `partner-stream dev` only (embedded broker): allows the published dev JWT secret and "
        "installs the CentralHub stand-in.",
    )
    hub_ping_interval: float = Field(10.0, gt=0, description="Seconds between server pings (SignalR needs <= 15).")
    hub_client_timeout: float = Field(30.0, gt=0, description="Close a socket silent for this many seconds.")
    hub_queue_size: int = Field(
        256, ge=8, description="Outbound messages buffered per socket; a tablet further behind is told to resync."
    )
    hub_max_message_bytes: int = Field(64 * 1024, ge=1024, description="Largest WebSocket frame accepted.")
    hub_requests_per_second: float = Field(
        20.0, gt=0, description="Requests a tablet socket may make per second (pings excluded); more are refused."
    )
    hub_request_burst: int = Field(40, ge=1, description="Requests a tablet socket may make at once above that rate.")
    hub_acks_per_second: float = Field(
        5.0, gt=0, description="Acknowledgements a tablet socket may send per second (each is a Kafka write)."
    )
    hub_ack_burst: int = Field(20, ge=1, description="Acknowledgements a tablet socket may send at once.")
    hub_negotiation_ttl: float = Field(
        30.0, gt=0, description="Seconds a SignalR negotiation waits for its socket before it is forgotten."
    )
    hub_max_negotiations: int = Field(
        10_000, ge=1, description="Pending SignalR negotiations per worker; more are refused with 503."
    )
    hub_max_negotiations_per_restaurant: int = Field(
        50, ge=1, description="Pending SignalR negotiations per restaurant; more are refused with 429."
    )

    # --- HTTP server --------------------------------------------------------------
    http_idle_timeout: float = Field(
        15.0,
        gt=0,
        description="Close an HTTP connection that has not sent a complete request for this long (idle keep-alive, "
        "slow headers, a connection held open after a refusal). Open WebSockets are not affected.",
    )
    http_max_connections: int | None = Field(
        None,
        ge=16,
        description="Open TCP connections (sockets included) the worker accepts; more are closed at once. "
        "Unset: the open-file limit minus a reserve for Kafka, RocksDB and logs.",
    )

    @field_validator("unseen_after")
    @classmethod
    def _unseen_steps(cls, value: str) -> str:
        parse_unseen_after(value)
        return value

    @model_validator(mode="after")
    def _transactions_need_kafka(self) -> Settings:
        if self.embedded and self.processing_guarantee == "exactly_once":
            raise ValueError("exactly_once needs Kafka transactions, which the embedded broker does not have")
        return self

    @model_validator(mode="after")
    def _no_published_secret(self) -> Settings:
        """A secret printed in our docs or compose file mints operator tokens for anyone who read them."""
        secret = self.jwt_secret
        if secret is None:
            return self
        if secret.strip() in PUBLISHED_JWT_SECRETS and not (self.dev_stack and self.embedded):
            raise ValueError(
                "PARTNER_STREAM_JWT_SECRET is a published example secret; anyone can mint operator tokens with it. "
                "Set a private one (e.g. `openssl rand -hex 32`); only `partner-stream dev` may use the dev secret"
            )
        if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"PARTNER_STREAM_JWT_SECRET is {len(secret.encode())} bytes; HS256 needs at least "
                f"{MIN_JWT_SECRET_BYTES} (e.g. `openssl rand -hex 32`)"
            )
        return self

    @property
    def unseen_thresholds(self) -> tuple[float, ...]:
        """The OrderUnseen steps after CreatedAt, in seconds, ascending (validated at start)."""
        return parse_unseen_after(self.unseen_after)

    @property
    def broker_urls(self) -> list[str]:
        """``broker_url`` split on ``;``, each with a scheme (``kafka://`` when it has none): what Faust takes."""
        parts = (part.strip() for part in self.broker_url.split(";"))
        return [part if "://" in part else f"kafka://{part}" for part in parts if part]

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` of each broker, for a plain Kafka client (port 9092 when none is given)."""
        return [f"{url.host}:{url.port or 9092}" for url in map(URL, self.broker_urls)]

    @property
    def embedded(self) -> bool:
        return self.broker_profile is BrokerProfile.EMBEDDED

    @property
    def effective_fetch_max_wait_ms(self) -> int | None:
        """The fetch wait to force on the worker consumer, or None for Faust's default."""
        if self.fetch_max_wait_ms is not None:
            return self.fetch_max_wait_ms
        return EMBEDDED_FETCH_MAX_WAIT_MS if self.embedded else None

    @property
    def paced_fetch(self) -> bool:
        """Embedded broker, wait not set: 5 ms while records flow, 50 ms when idle (faust_patches/fetch_pace.py)."""
        return self.embedded and self.fetch_max_wait_ms is None


#: Tansu's fetch does not wake on produce, so the long poll is pure latency; 5 ms
#: measured best on a 2-core machine (latency vs. idle polling CPU).
EMBEDDED_FETCH_MAX_WAIT_MS = 5


#: Secret the dev stack signs with; ``partner-stream dev`` sets it, and no other worker accepts it.
DEV_JWT_SECRET = "partner-stream-dev-secret-do-not-use-in-production"
#: Secrets that appear in this repository (the dev stack's, the old compose fallback) or in every tutorial.
PUBLISHED_JWT_SECRETS = frozenset(
    {
        DEV_JWT_SECRET,
        "change-me-in-production",
        "changeme",
        "change-me",
        "secret",
        "your-256-bit-secret",
    }
)
#: RFC 7518 3.2: an HS256 key must be at least as long as the hash (PyJWT warns below that).
MIN_JWT_SECRET_BYTES = 32


class SettingsRefused(SystemExit):
    """The environment names settings the worker must not run with; the message says which and why."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, or exit with one readable line per problem (no traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(error)}" for error in exc.errors())
        raise SettingsRefused(f"partner-stream: refusing to start, the settings are invalid:\n{problems}") from None


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{location.upper()}: {message}" if location else message
