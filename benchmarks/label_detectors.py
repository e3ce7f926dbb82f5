"""Which detector to put on the joined-label errors (`performance:error`)?

    python benchmarks/label_detectors.py [--seeds 5 6 7] [--plot out/label-detectors.png]

Runs the labelled synthetic stream (stream_monitor.synth.labelled: a classifier whose inputs never
change while its error rate jumps from 10% to 40% at event 2,500; labels 20-80 events late, out of
order, some missing) through the whole pipeline with the in-memory stores, once per detector and
seed, and prints for each: false alarms before the change, the first alert after it (as the index
of the prediction named, and its distance from the change), and alerts after that one. The
baseline in the same run is ADWIN. `cusum` is calibrated to the default budget (1 per 1,000,000
values): on the 0/1 errors it is the Bernoulli CUSUM. Quality, not speed: nothing is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.output_records import DriftAlert
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state.memory import MemoryStore
from stream_monitor.synth import LabelledSpec, labelled

DETECTORS = ("adwin", "cusum", "ddm", "eddm", "hddm_a", "hddm_w")
T0 = 1_767_225_600.0


def run(detector: str, seed: int) -> list[int]:
    """Indices (of the prediction named) of the alerts on performance:error."""
    spec = LabelledSpec(seed=seed)
    cfg = parse_config({
        "windows": {"reference_size": 500, "recent_size": 200},
        "detectors": {detector: {"type": detector}},
        "models": [{"match": spec.model, "labels": {"task": "classification",
                                                    "ttl_seconds": 1000},
                    "signals": [{"match": "performance:*", "detectors": [detector]}]}]})
    s = labelled(spec)
    raws = [RawRecord(v, Position("inference-labels", 0, i)) for i, v in enumerate(s.early)]
    n = len(raws)
    raws += [RawRecord(v, Position("inference-events", 0, i)) for i, v in enumerate(s.inference)]
    raws += [RawRecord(v, Position("inference-labels", 0, n + i)) for i, v in enumerate(s.labels)]
    raws.sort(key=lambda r: (orjson.loads(r.value)["timestamp"], r.position.topic))

    async def go() -> list[int]:
        pipe = BatchPipeline(cfg, MemoryStore(), clock=lambda: T0 + 1e6)
        hits = []
        for k in range(0, len(raws), 500):
            out = await pipe.run(raws[k:k + 500])
            hits += [int(r.record.detected_at.event_id.rsplit("-", 1)[1])
                     for r in out.records if isinstance(r.record, DriftAlert)]
        return hits

    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7])
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()
    change = LabelledSpec().concept_drift_at
    rows = []
    total = len(DETECTORS) * len(args.seeds)
    for d in DETECTORS:
        for seed in args.seeds:
            print(f"[{len(rows) + 1}/{total}] {d} seed {seed}", file=sys.stderr, flush=True)
            hits = run(d, seed)
            before = [h for h in hits if h < change]
            after = [h for h in hits if h >= change]
            rows.append((d, seed, before, after))
    print(f"{'detector':9} {'seed':>4} {'false alarms':>12} {'first alert':>11} {'delay':>6} "
          f"{'later alerts':>12}")
    for d, seed, before, after in rows:
        first = after[0] if after else None
        print(f"{d:9} {seed:>4} {len(before):>12} {first if first is not None else '-':>11} "
              f"{(first - change) if first is not None else '-':>6} {max(0, len(after) - 1):>12}")
    base = [r for r in rows if r[0] == "adwin"]
    base_fa = sum(len(r[2]) for r in base)
    print(f"\nbaseline adwin: {base_fa} false alarms over {len(base)} seeds")
    for d in DETECTORS[1:]:
        fa = sum(len(r[2]) for r in rows if r[0] == d)
        print(f"{d:9} false alarms {fa} (adwin {base_fa})")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3.2))
        for d, seed, before, after in rows:
            y = DETECTORS.index(d) + (args.seeds.index(seed) - 1) * 0.2
            ax.scatter(before, [y] * len(before), marker="x", color="tab:red", s=30)
            ax.scatter(after[:1], [y] * len(after[:1]), marker="o", color="tab:green", s=22)
            ax.scatter(after[1:], [y] * len(after[1:]), marker="+", color="tab:orange", s=40)
        ax.axvline(change, color="grey", linestyle="--", label="error 10% -> 40%")
        ax.set_yticks(range(len(DETECTORS)), DETECTORS)
        ax.set_xlabel("prediction index named by the alert (x: false alarm before the change, "
                      "o: first after it, +: repeat after it)")
        ax.set_title("Alerts on performance:error, per detector and seed")
        ax.legend(loc="lower right")
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
