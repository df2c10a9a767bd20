"""The embedded broker's end offsets come from the newest stored batch; a partition whose batch a Fetch did not
return is asked again before ListOffsets' too-low end is kept (partner_stream/faust_patches/end_offsets.py).
The real broker's answers are checked in tests/integration/test_end_offsets_on_tansu.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from partner_stream.faust_patches import end_offsets

TP0 = TopicPartition("changelog", 0)
TP3 = TopicPartition("changelog", 3)


def batch(base_offset: int, records: int) -> bytes:
    """A stored batch of ``records`` records starting at ``base_offset``, as a Fetch returns it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for n in range(records):
        builder.append(n, timestamp=None, key=b"k", value=b"v", headers=[])
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big")  # the broker sets the base offset
    return bytes(raw)


@dataclass
class Response:
    topics: list[Any]


@dataclass
class Cluster:
    def leader_for_partition(self, tp: TopicPartition) -> int:
        return 0


@dataclass
class Client:
    """Answers each Fetch with the next of ``answers``: {partition: batch bytes or b"" for nothing}."""

    answers: list[dict[int, bytes]]
    cluster: Cluster = field(default_factory=Cluster)
    asked: list[list[int]] = field(default_factory=list)

    async def send(self, node_id: int, request: Any) -> Response:
        asked = [partition for _, partitions in request.topics for partition, *_ in partitions]
        self.asked.append(asked)
        answer = self.answers.pop(0)
        return Response([("changelog", [(p, 0, -1, answer.get(p, b"")) for p in asked])])


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(end_offsets, "RETRY_DELAY_SECONDS", 0.0)


async def test_a_partition_the_fetch_left_out_is_asked_again_alone() -> None:
    client = Client([{0: batch(40, 3), 3: b""}, {3: batch(49252, 2)}])
    ends = await end_offsets.stored_end_offsets(client, {TP0: 41, TP3: 49253})
    assert ends == {TP0: 43, TP3: 49254}
    assert client.asked == [[0, 3], [3]]


async def test_listoffsets_end_is_kept_only_after_every_attempt_came_back_empty(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client([{}] * end_offsets.ATTEMPTS)
    ends = await end_offsets.stored_end_offsets(client, {TP3: 49253})
    assert ends == {TP3: 49253} and len(client.asked) == end_offsets.ATTEMPTS
    assert "no newest batch read for 1 partitions" in caplog.text
