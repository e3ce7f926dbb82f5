"""Rates from a consumer group's committed offsets, as the benchmark polls them."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any

from .common import START_FRACTION


@dataclass
class CommitPoint:
    t: float  # estimated wall-clock time of the commit: middle of the poll gap it was seen in
    offset: int
    half_gap: float  # +- uncertainty of t, half the time between the two polls


def rate_from_commits(
    points: list[CommitPoint], n: int, t_launch: float, not_before: float | None = None
) -> dict[str, Any]:
    """Rate between the first commit at >= START_FRACTION of n and the last commit before the
    final one (a commit of an offset < n is made while events are still being processed, so it
    is a true sample of progress; the final commit can come up to broker_commit_interval after
    the last event was done, so it only bounds the rate from below).

    ``not_before`` (scale-out mode): the start must also be a commit first seen by a poll made
    after that time (the poll before it was at ``t - half_gap``), i.e. made after it."""
    res: dict[str, Any] = {}
    if not points:
        return res
    res["startup_s"] = points[0].t - t_launch
    start = next(
        (
            p
            for p in points
            if p.offset >= START_FRACTION * n
            and (not_before is None or p.t - p.half_gap >= not_before)
        ),
        None,
    )
    done = next((p for p in points if p.offset >= n), None)
    if done is not None:
        res["first_commit_to_done_s"] = done.t - points[0].t
    if start is None or done is None:
        return res
    res["start_index"] = next(i for i, p in enumerate(points) if p is start)
    inflow = [p for p in points if start.offset < p.offset < n]
    if inflow:
        end = inflow[-1]
        res["end_index"] = next(i for i, p in enumerate(points) if p is end)
        res["rate"] = (end.offset - start.offset) / (end.t - start.t)
        res["window"] = {
            "from_offset": start.offset,
            "to_offset": end.offset,
            "from_s": round(start.t - t_launch, 3),
            "to_s": round(end.t - t_launch, 3),
            "events": end.offset - start.offset,
            "seconds": round(end.t - start.t, 3),
            "fraction_of_events": round((end.offset - start.offset) / n, 3),
            "timing_uncertainty_s": round(start.half_gap + end.half_gap, 3),
            "relative_uncertainty": round((start.half_gap + end.half_gap) / (end.t - start.t), 4),
        }
    if done.t > start.t:
        res["rate_to_done"] = (n - start.offset) / (done.t - start.t)
    steps = [b.offset - a.offset for a, b in itertools.pairwise(points) if b.offset < n]
    gaps = [b.t - a.t for a, b in itertools.pairwise(points) if b.offset < n]
    res["commit_steps"] = {
        "commits_seen": len(points),
        "median_events_per_commit": statistics.median(steps) if steps else None,
        "median_s_between_commits": round(statistics.median(gaps), 3) if gaps else None,
        "max_s_between_commits": round(max(gaps), 3) if gaps else None,
        "final_commit_lag_s": round(done.t - (inflow[-1].t if inflow else start.t), 3),
    }
    return res
