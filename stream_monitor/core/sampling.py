"""Deterministic sampling of a hot model's events (docs/scaling.md "Sampling a hot model").

A model rule's ``sample_rate`` r (0 < r <= 1) keeps an event when the hash of its ``event_id``,
read as a number in [0, 1), is below r. The hash is BLAKE2b of the id's UTF-8 bytes (8 bytes,
big-endian), not Python's ``hash()``, which is salted per process: every worker, every restart
and ``stream-monitor replay`` keep exactly the same events. A label is kept by the same test on
its ``event_id``, so a kept prediction still meets its label and a dropped one leaves no
label waiting in the join.

Because the test is ``u(id) < r``, the events kept at a rate are a subset of those kept at any
higher rate, and a request id shared by several models is kept for all models sampled at the
same rate or higher. Every event has an ``event_id`` (the decoder dead-letters an event
without one before it gets here), so no event is sampled by anything else.

>>> sampled("e1", 1.0)
True
>>> [sampled(f"e{i}", 0.5) for i in range(8)] == [sampled(f"e{i}", 0.5) for i in range(8)]
True
>>> round(hash_unit("e1"), 6) == round(hash_unit("e1"), 6)
True
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["hash_unit", "sampled"]

_SPAN = float(1 << 64)


def hash_unit(event_id: str) -> float:
    """The event id's position in [0, 1): BLAKE2b-64 of its UTF-8 bytes over 2**64."""
    digest = blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPAN


def sampled(event_id: str, rate: float) -> bool:
    """True when an event with this id is watched at this sample rate."""
    return rate >= 1.0 or hash_unit(event_id) < rate
