"""The `partner-stream` command as a user runs it: tokens, the embedded broker, publishing orders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jwt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from partner_stream.dev.broker import EmbeddedBroker, free_port, port_accepts
from partner_stream.settings import DEV_JWT_SECRET
from tests.support.polling import eventually

CLI = [sys.executable, "-m", "partner_stream.cli"]
SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARTNER_STREAM_")}
    return subprocess.run([*CLI, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_token_mints_tablet_and_operator_tokens_with_the_configured_secret() -> None:
    tablet = run_cli("token", "--restaurant", "42", "--ttl", "90m", PARTNER_STREAM_JWT_SECRET=SECRET)
    claims = jwt.decode(tablet.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["restaurantId"] == "42" and 5300 < claims["exp"] - claims["iat"] <= 5400

    operator = run_cli("token", "--operator")
    assert "dev secret" in operator.stderr
    assert jwt.decode(operator.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])["role"] == "operator"

    refused = run_cli("token")
    assert refused.returncode != 0 and "--restaurant" in refused.stderr


def ignore_sigint() -> None:
    """What a shell does to a background job (``cmd &``): the child starts with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started", ["foreground", "as a background job"])
def test_broker_command_listens_and_stops_cleanly_on_ctrl_c(started: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigint if started != "foreground" else None,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_accepts("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, "broker did not start"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert not port_accepts("127.0.0.1", port)
    finally:
        if process.poll() is None:
            process.kill()


async def test_order_create_publishes_pascal_case_json(broker: EmbeddedBroker) -> None:
    topic = f"cli-{free_port()}-order-created"
    result = run_cli(
        "order", "create", "--restaurant", "77", "--order-id", "cli-1",
        PARTNER_STREAM_BROKER_URL=broker.url, PARTNER_STREAM_TOPIC_ORDER_CREATED=topic,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cli-1"  # the ID alone, as the README says: id=$(... order create ...)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:

        async def records() -> list:
            batches = await consumer.getmany(timeout_ms=500)
            return [r for rs in batches.values() for r in rs]

        (record,) = await eventually(records, bool, interval=0, what="the published order")
    finally:
        await consumer.stop()
    body = orjson.loads(record.value)
    assert (body["OrderId"], body["RestaurantId"], record.key) == ("cli-1", "77", b"cli-1")
    assert body["Items"] and body["TotalPrice"] > 0
