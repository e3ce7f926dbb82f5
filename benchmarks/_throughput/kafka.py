"""Kafka helpers: end offsets, topic and group deletion, the committed-offset and group pollers."""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_monitor.adapters.kafka_clients import env_client_kwargs

from .redis_cost import redis_cleanup


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic's partitions (= records, on a fresh topic)."""
    c = AIOKafkaConsumer(**env_client_kwargs(bootstrap), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        res = {}
        for t in topics:
            parts = c.partitions_for_topic(t)
            if parts is None:
                await c._client.force_metadata_update()  # learn a topic created after start
                parts = c.partitions_for_topic(t) or set()
            tps = [TopicPartition(t, p) for p in parts]
            ends = await c.end_offsets(tps) if tps else {}
            res[t] = sum(ends.values())
        return res
    finally:
        await c.stop()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


class CommitPoller:
    """Polls a consumer group's committed offset of one partition (OffsetFetch)."""

    def __init__(self, bootstrap: str, group: str, tp: TopicPartition) -> None:
        self.admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
        self.group = group
        self.tp = tp
        self.coordinator: int | None = None

    async def __aenter__(self) -> CommitPoller:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def committed(self) -> int:
        """The committed offset, -1 if none yet."""
        if self.coordinator is None:
            self.coordinator = await self.admin.find_coordinator(self.group)
        res = await self.admin.list_consumer_group_offsets(self.group, self.coordinator, [self.tp])
        meta = res.get(self.tp)
        return -1 if meta is None else meta.offset


async def partition_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = AIOKafkaConsumer(**env_client_kwargs(bootstrap), group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic)
        if parts is None:
            await c._client.force_metadata_update()
            parts = c.partitions_for_topic(topic) or set()
        ends = await c.end_offsets([TopicPartition(topic, q) for q in sorted(parts)])
        return {tp.partition: off for tp, off in sorted(ends.items())}
    finally:
        await c.stop()


async def delete_groups(bootstrap: str, groups: list[str]) -> dict[str, str]:
    """Delete consumer groups (DeleteGroups; aiokafka's admin client has no helper for it).
    A group can only be deleted once it is empty, i.e. after its workers have left."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DeleteGroupsRequest

    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
    await admin.start()
    res: dict[str, str] = {}
    try:
        for g in groups:
            try:
                node = await admin.find_coordinator(g)
                resp = await admin._send_request(DeleteGroupsRequest([g]), node)
                for gid, code in resp.results:
                    res[gid] = "deleted" if code == 0 else for_code(code).__name__
            except Exception as exc:
                res[g] = repr(exc)
    finally:
        await admin.close()
    return res


class GroupPoller:
    """One consumer group: committed offsets of all partitions of a topic (one OffsetFetch),
    and its state, members and their assignments (DescribeGroups)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap), request_timeout_ms=10_000)
        self.group = group
        self.topic = topic
        self.tps = [TopicPartition(topic, q) for q in range(partitions)]
        self.coordinator: int | None = None

    async def __aenter__(self) -> GroupPoller:
        await self.admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.close()

    async def _coordinator(self) -> int:
        if self.coordinator is None:
            self.coordinator = await self.admin.find_coordinator(self.group)
        return self.coordinator

    async def committed(self) -> list[int]:
        """Committed offset of each partition, 0 where none yet."""
        res = await self.admin.list_consumer_group_offsets(
            self.group, await self._coordinator(), self.tps
        )
        out = []
        for tp in self.tps:
            meta = res.get(tp)
            out.append(max(0, meta.offset) if meta is not None else 0)
        return out

    async def describe(self) -> tuple[str, dict[str, list[int]]]:
        """(group state, {client id: partitions of the topic assigned to it})."""
        from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

        [resp] = await self.admin.describe_consumer_groups([self.group], await self._coordinator())
        g = resp.to_object()["groups"][0]
        members: dict[str, list[int]] = {}
        for m in g["members"]:
            parts: list[int] = []
            raw = m.get("member_assignment")
            if raw:
                a = ConsumerProtocolMemberAssignment.decode(raw)
                parts = sorted(q for t, qs in a.assignment if t == self.topic for q in qs)
            name = m["client_id"] if m["client_id"] not in members else m["member_id"]
            members[name] = parts
        return g["state"], members


async def clean_up(bootstrap: str, redis_url: str, cleanup: dict[str, list[str]],
                   keep_topics: bool) -> dict[str, Any]:
    """Delete what a benchmark run made (its topics unless kept, its Redis keys, and its
    consumer groups when it lists them), best effort; returns what was deleted."""
    done: dict[str, Any] = {}
    if not keep_topics:
        with contextlib.suppress(Exception):
            await delete_topics(bootstrap, cleanup["topics"])
            done["topics_deleted"] = len(cleanup["topics"])
    for prefix in cleanup["redis_prefixes"]:  # normally already deleted after each run
        with contextlib.suppress(Exception):
            await redis_cleanup(redis_url, prefix)
    if "groups" in cleanup:
        with contextlib.suppress(Exception):
            done["groups"] = await delete_groups(bootstrap, cleanup["groups"])
    return done
