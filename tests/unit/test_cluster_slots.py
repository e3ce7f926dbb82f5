"""Slot arithmetic and client selection for Redis Cluster, without a cluster."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from stream_monitor.contracts.units import unit_id
from stream_monitor.settings import Settings
from stream_monitor.state.base import model_tag, unit_key
from stream_monitor.state.client import (
    SLOTS,
    group_by_slot,
    redis_client,
    slot_of,
    slot_tag,
    split_cluster_url,
)

keys = st.one_of(st.text(max_size=40), st.binary(max_size=40).map(bytes))


@given(keys)
def test_slot_of_agrees_with_redis_py(key: str | bytes) -> None:
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    assert slot_of(raw) == key_slot(raw)


@given(st.lists(keys, max_size=60))
def test_group_by_slot_partitions_the_keys_one_slot_a_group(ks: list[str | bytes]) -> None:
    raw = [k.encode("utf-8", "surrogatepass") if isinstance(k, str) else k for k in ks]
    groups = group_by_slot(raw)
    positions = sorted(i for idx in groups.values() for i in idx)
    assert positions == list(range(len(raw)))  # every key once
    for slot, idx in groups.items():
        assert idx == sorted(idx)  # order kept inside a group
        assert {key_slot(raw[i]) for i in idx} == {slot}
    assert len(groups) == len({key_slot(k) for k in raw})


# Model ids are non-empty (schema) UTF-8 text (no lone surrogates: JSON decoding refuses them);
# the unit separator is reserved (state.base.UNIT_SEP).
ids = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1f"),
              min_size=1, max_size=30)


@given(ids, st.one_of(st.none(), ids))
def test_every_key_of_a_model_and_its_versions_shares_one_slot(model: str,
                                                                version: str | None) -> None:
    """What the stores write for one model: state, versions, outbox, dedupe, labels."""
    base = unit_key("sm", unit_id(model, version))
    tag = model_tag(model)
    ks = [base + ":version", base + ":model", base + ":outbox", base + ":sig:amount:recent",
          f"sm:{tag}:versions", f"sm:{tag}:versions:latest", f"sm:{tag}:dedupe:7",
          f"sm:{tag}:labels:stats", f"sm:{tag}:pred:12", f"sm:{tag}:pairs:v:2"]
    assert len(group_by_slot(ks)) == 1


def test_slot_tags_cover_every_slot() -> None:
    tags = [slot_tag(s) for s in range(SLOTS)]
    assert [slot_of(f"sm:{t}:epoch") for t in tags] == list(range(SLOTS))
    assert len(set(tags)) == SLOTS


def test_cluster_is_chosen_by_the_url_scheme_or_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert split_cluster_url("redis+cluster://u:p@h:7000/0") == ("redis://u:p@h:7000/0", True)
    assert split_cluster_url("REDISS+CLUSTER://h:7000") == ("rediss://h:7000", True)
    assert split_cluster_url("redis://h:6379/0") == ("redis://h:6379/0", False)
    assert isinstance(redis_client("redis+cluster://127.0.0.1:1/0"), RedisCluster)
    assert isinstance(redis_client("redis://127.0.0.1:1/0"), Redis)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    assert Settings().redis_cluster is True
    assert isinstance(redis_client(Settings()), RedisCluster)
    monkeypatch.setenv("REDIS_CLUSTER", "false")
    assert isinstance(redis_client(Settings()), Redis)
