"""Embedded-broker workarounds apply only to the embedded profile, never to a real cluster."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from partner_stream.app import create_app, embedded_broker_overrides
from partner_stream.faust_patches import offset_holes
from partner_stream.faust_patches.transport import TunedFetchTransport
from partner_stream.settings import DEV_JWT_SECRET, BrokerProfile, Settings, SettingsRefused, get_settings


def worker_consumer(settings: Settings) -> tuple[int, bool]:
    """The worker consumer's fetch wait, and whether its fetch stops at offset holes (then put back)."""
    app = create_app(settings)

    async def build() -> tuple[int, bool]:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms, offset_holes.installed()
        finally:
            await consumer.stop()

    offset_holes.uninstall()
    try:
        return asyncio.run(build())
    finally:
        offset_holes.uninstall()


def worker_fetch_wait_ms(settings: Settings) -> int:
    return worker_consumer(settings)[0]


def test_real_kafka_profile_keeps_faust_defaults() -> None:
    app = create_app(Settings(broker_url="kafka://kafka-1:9092;kafka://kafka-2:9092"))
    # The same brokers; only the consumer's transport differs (its fetch keeps a partition's backlog).
    assert [str(u) for u in app.conf.broker_consumer] == [
        "partner-kafka://kafka-1:9092",
        "partner-kafka://kafka-2:9092",
    ]
    assert isinstance(app.transport, TunedFetchTransport)
    assert not app.true_end_offsets  # Kafka's ListOffsets is right
    assert app.conf.broker_session_timeout != embedded_broker_overrides()["broker_session_timeout"]
    assert worker_consumer(Settings()) == (1500, False)  # Kafka's gaps are legitimate: no wait for holes


def test_embedded_profile_applies_tansu_workarounds_and_short_fetch_wait() -> None:
    settings = Settings(broker_profile="embedded", broker_url="kafka://127.0.0.1:9092")
    app = create_app(settings)
    # Changelog records go out in batches; recovery reads each partition's end from its newest batch.
    assert app.conf.producer_max_batch_size > 1
    assert app.true_end_offsets
    assert app.conf.broker_session_timeout == 6.0
    assert isinstance(app.transport, TunedFetchTransport)
    assert worker_consumer(settings) == (5, True)  # and its fetch waits for unstored offsets


def test_fetch_wait_setting_applies_to_a_real_cluster_only_when_asked() -> None:
    assert worker_fetch_wait_ms(Settings(fetch_max_wait_ms=100)) == 100


def test_exactly_once_is_offered_for_kafka_and_refused_on_the_embedded_broker() -> None:
    app = create_app(Settings(processing_guarantee="exactly_once"))
    assert str(app.conf.processing_guarantee.value) == "exactly_once"
    with pytest.raises(ValidationError, match="embedded broker does not have"):
        Settings(broker_profile="embedded", processing_guarantee="exactly_once")


@pytest.mark.parametrize("secret", ["change-me-in-production", DEV_JWT_SECRET, " secret "])
def test_a_published_jwt_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="published example secret"):
        Settings(jwt_secret=secret, broker_profile=BrokerProfile.KAFKA)


def test_the_dev_secret_is_accepted_only_by_the_dev_stack_on_the_embedded_broker() -> None:
    Settings(jwt_secret=DEV_JWT_SECRET, broker_profile=BrokerProfile.EMBEDDED, dev_stack=True)
    with pytest.raises(ValidationError):
        Settings(jwt_secret=DEV_JWT_SECRET, broker_profile=BrokerProfile.KAFKA, dev_stack=True)


def test_a_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(jwt_secret="x" * 31)


def test_invalid_settings_exit_with_one_line_per_problem_and_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def refusal() -> str:
        get_settings.cache_clear()
        try:
            with pytest.raises(SettingsRefused) as refused:
                get_settings()
        finally:
            get_settings.cache_clear()
        return str(refused.value)

    monkeypatch.setenv("PARTNER_STREAM_WEB_PORT", "0")
    monkeypatch.setenv("PARTNER_STREAM_FENCE_FRACTION", "2")
    lines = refusal().splitlines()
    assert lines[0] == "partner-stream: refusing to start, the settings are invalid:"
    assert [line.split(":")[0].strip(" -") for line in lines[1:]] == [
        "PARTNER_STREAM_WEB_PORT",
        "PARTNER_STREAM_FENCE_FRACTION",
    ]
    monkeypatch.delenv("PARTNER_STREAM_WEB_PORT")
    monkeypatch.delenv("PARTNER_STREAM_FENCE_FRACTION")
    monkeypatch.setenv("PARTNER_STREAM_JWT_SECRET", "short")
    assert "at least 32" in refusal()


def test_broker_urls_are_parsed_in_one_place() -> None:
    settings = Settings(broker_url=" kafka://a:9092 ; b:19092;;kafka://c")
    assert settings.broker_urls == ["kafka://a:9092", "kafka://b:19092", "kafka://c"]
    assert settings.bootstrap_servers == ["a:9092", "b:19092", "c:9092"]


def test_unseen_steps_are_durations_listed_in_order() -> None:
    assert Settings().unseen_thresholds == (60.0,)
    assert Settings(unseen_after="60s, 5m,15m").unseen_thresholds == (60.0, 300.0, 900.0)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "not a duration"),
        ("soon", "not a duration"),
        ("0.5s", "at least 1s"),
        ("5m,60s", "strictly ascending"),
        ("60s,60s", "strictly ascending"),
        (",".join(f"{n}m" for n in range(1, 9)), "at most 7 steps"),
        ("9" * 40, "not a duration"),
        ("400d", "longer than a year"),
    ],
)
def test_unseen_steps_that_make_no_sense_refuse_to_start(value: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Settings(unseen_after=value)


def test_the_arrival_grace_is_bounded() -> None:
    with pytest.raises(ValidationError):
        Settings(unseen_arrival_grace=float("inf"))
    with pytest.raises(ValidationError):
        Settings(unseen_arrival_grace=-1)
