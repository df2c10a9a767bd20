"""Refuse to start when the broker profile does not match the broker the worker is pointed at.

The ``embedded`` profile carries workarounds for the Tansu broker (one record per producer
batch, a 6 s session timeout, a 5 ms fetch wait) that must never reach a real cluster; and
a worker on Tansu *without* them starts, looks ready, and then fails table recovery (Tansu's
ListOffsets is wrong for multi-record batches). Tansu names itself in every Metadata
response (cluster id ``tansu_cluster``), so the worker asks once, before Faust starts.

If the broker cannot be reached in a few seconds the check is skipped: Faust's own retries
and readiness cover an unreachable broker, and a deploy must not fail on a slow start.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from aiokafka import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest

from .settings import Settings, SettingsRefused

log = logging.getLogger(__name__)

#: What Tansu reports as its cluster id (it has no setting for it in the embedded command line).
TANSU_CLUSTER_ID_PREFIX = "tansu"
CHECK_TIMEOUT_SECONDS = 5.0


def profile_problem(settings: Settings, cluster_id: str) -> str | None:
    """Why this profile must not run against a broker with ``cluster_id``, or None."""
    is_tansu = cluster_id.lower().startswith(TANSU_CLUSTER_ID_PREFIX)
    if is_tansu and not settings.embedded:
        return (
            f"the broker at {settings.broker_url} is the embedded Tansu broker (cluster id {cluster_id!r}): set "
            "PARTNER_STREAM_BROKER_PROFILE=embedded, or table recovery will fail on its first multi-record batch"
        )
    if settings.embedded and not is_tansu:
        return (
            f"PARTNER_STREAM_BROKER_PROFILE=embedded, but the broker at {settings.broker_url} is not the embedded "
            f"Tansu broker (cluster id {cluster_id!r}): its workarounds must not reach a real cluster; use "
            "PARTNER_STREAM_BROKER_PROFILE=kafka"
        )
    return None


async def cluster_id_of(servers: list[str], timeout: float = CHECK_TIMEOUT_SECONDS) -> str | None:
    """The cluster id the brokers report, or None if they cannot be asked in time."""
    client = AIOKafkaClient(bootstrap_servers=servers, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        node_id = next(iter(client.cluster.brokers())).nodeId
        response = await asyncio.wait_for(client.send(node_id, MetadataRequest([])), timeout)
        cluster_id = response.to_object().get("cluster_id")
        return cluster_id if isinstance(cluster_id, str) else None
    except Exception as exc:  # unreachable, no brokers, an old protocol: not this check's business
        log.debug("broker identity check skipped: %r", exc)
        return None
    finally:
        await client.close()


def check_broker_profile(settings: Settings) -> None:
    """Raise :class:`SettingsRefused` if the profile and the broker disagree (see the module docstring).

    Runs in a thread with its own event loop: it is called before Faust creates the worker's loop.
    """
    found: list[str | None] = [None]
    servers = settings.bootstrap_servers
    thread = threading.Thread(target=lambda: found.__setitem__(0, asyncio.run(cluster_id_of(servers))), daemon=True)
    thread.start()
    thread.join(CHECK_TIMEOUT_SECONDS * 3)
    cluster_id = found[0]
    if cluster_id is None:
        return
    problem = profile_problem(settings, cluster_id)
    if problem is not None:
        raise SettingsRefused(f"partner-stream: refusing to start: {problem}")
