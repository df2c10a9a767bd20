"""A worker refuses to start when its broker profile does not match the broker it is pointed at."""

from __future__ import annotations

import subprocess

import pytest

from partner_stream.broker_check import check_broker_profile, cluster_id_of, profile_problem
from partner_stream.dev.broker import EmbeddedBroker, free_port
from partner_stream.dev.local import WORKER_COMMAND, local_worker_env
from partner_stream.settings import BrokerProfile, Settings, SettingsRefused

SECRET = "broker-check-test-secret-0123456789abcdef"


def settings(profile: BrokerProfile, url: str = "kafka://127.0.0.1:9092") -> Settings:
    return Settings(broker_profile=profile, broker_url=url, jwt_secret=SECRET)


def test_each_mismatch_is_named_with_the_fix() -> None:
    assert "PARTNER_STREAM_BROKER_PROFILE=embedded" in profile_problem(settings(BrokerProfile.KAFKA), "tansu_cluster")
    assert "PARTNER_STREAM_BROKER_PROFILE=kafka" in profile_problem(settings(BrokerProfile.EMBEDDED), "MkU3OEVBNTcw")
    assert profile_problem(settings(BrokerProfile.EMBEDDED), "tansu_cluster") is None
    assert profile_problem(settings(BrokerProfile.KAFKA), "MkU3OEVBNTcw") is None


async def test_the_embedded_broker_names_itself(broker: EmbeddedBroker) -> None:
    assert (await cluster_id_of([broker.bootstrap])).startswith("tansu")


def test_an_unreachable_broker_skips_the_check() -> None:
    check_broker_profile(settings(BrokerProfile.KAFKA, f"kafka://127.0.0.1:{free_port()}"))


def test_a_kafka_profile_worker_on_the_embedded_broker_refuses_to_start(broker: EmbeddedBroker, tmp_path) -> None:
    with pytest.raises(SettingsRefused):
        check_broker_profile(settings(BrokerProfile.KAFKA, broker.url))
    env = local_worker_env(
        broker_url=broker.url, data_dir=tmp_path, web_port=free_port(), jwt_secret=SECRET,
        settings={"BROKER_PROFILE": "kafka"},
    )  # fmt: skip
    started = subprocess.run(WORKER_COMMAND, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = started.stdout + started.stderr
    assert started.returncode != 0, output[-2000:]
    assert "embedded Tansu broker" in output and "PARTNER_STREAM_BROKER_PROFILE=embedded" in output
    assert "Traceback" not in output
