"""Incidents (docs/incidents.md): one upstream break that moves 8 of a model's 10 features at
once, over seeds and break sizes, through the pipeline (in-memory store, as replay runs it).

Per run: the drift alerts (what each would page without incidents), the incidents opened (the
pages with incidents), whether every alert carries that incident's id, the spread of the 8
detections in event time (what ``window_seconds`` must cover) and whether the incident resolved
after the features came back. Counts, not timings: the figures do not depend on the machine.

    .venv/bin/python benchmarks/incidents.py            # 10 seeds x 3 break sizes, ~1.5 min
    .venv/bin/python benchmarks/incidents.py --quick    # 2 seeds

Writes benchmarks/results/incidents-<stamp>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from stream_monitor.config import parse_config
from stream_monitor.contracts import Position, RawRecord
from stream_monitor.contracts.records import parse_time
from stream_monitor.pipeline import BatchPipeline
from stream_monitor.state import MemoryStore
from stream_monitor.synth import Drift, StreamSpec, generate

EIGHT = ("amount", "utilization", "age", "tenure_months", "income_k", "f5", "f6", "f7")
WINDOW = 600.0
CONFIG: dict[str, Any] = {
    "version": 1, "detectors": {"cusum": {"type": "cusum"}},
    "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                "alerts": {"hold_seconds": 10, "dedupe_seconds": 600},
                "incidents": {"window_seconds": WINDOW}}]}
EVENTS, BREAK, BACK = 9000, 3000, 6000  # 0.1 s apart: 300 s of event time, then 600 s


async def one(seed: int, shift: float) -> dict[str, Any]:
    drifts = (*(Drift(BREAK, f, shift) for f in EIGHT), *(Drift(BACK, f, -shift) for f in EIGHT))
    lines = generate(StreamSpec(events_per_model=EVENTS, n_features=10, drifts=drifts, seed=seed))
    raws = [RawRecord(v, Position("in", 0, i)) for i, v in enumerate(lines)]
    pipe = BatchPipeline(parse_config(CONFIG), MemoryStore(), clock=lambda: 0.0)
    recs: list[Any] = []
    for lo in range(0, len(raws), 1000):
        res = await pipe.run(raws[lo:lo + 1000])
        recs += [r.record for r in res.records]
        await pipe.store.clear_outbox(res.outbox)
    alerts = [r for r in recs if r.type == "drift_alert"]
    incidents = [r for r in recs if r.type == "incident"]
    opened = [r for r in incidents if r.status == "opened"]
    times = [parse_time(a.detected_at.event_time) or 0.0 for a in alerts]
    ids = {i.incident_id for i in opened}
    return {
        "seed": seed, "shift_std": shift, "drift_alerts": len(alerts),
        "alerts_after_break": sum(1 for a in alerts if a.detected_at.offset >= BREAK),
        "signals": sorted({a.signal for a in alerts}),
        "incidents_opened": len(opened),
        "incident_records": len(incidents),
        "alerts_carry_the_id": all(a.incident_id in ids for a in alerts),
        "detection_spread_seconds": (max(times) - min(times)) if times else None,
        "resolved": sum(1 for i in incidents if i.status == "resolved"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seeds = range(2) if args.quick else range(10)
    shifts = (1.0, 2.0) if args.quick else (0.75, 1.0, 2.0)
    t0 = time.time()
    rows = [asyncio.run(one(s, sh)) for sh in shifts for s in seeds]
    out = Path(__file__).parent / "results" / time.strftime("incidents-%Y-%m-%d-%H%M%S.json",
                                                             time.gmtime())
    out.write_text(json.dumps({"config": CONFIG, "events": EVENTS, "break_at": BREAK,
                               "back_at": BACK, "rows": rows,
                               "seconds": round(time.time() - t0, 1)}, indent=1))
    print("| shift (std) | runs | drift alerts (pages without incidents) | incidents opened "
          "(pages) | every alert has its id | detection spread, max (s) | resolved |")
    print("|---|---|---|---|---|---|---|")
    for sh in shifts:
        rs = [r for r in rows if r["shift_std"] == sh]
        spread = max((r["detection_spread_seconds"] or 0.0) for r in rs)
        print(f"| {sh:g} | {len(rs)} | {', '.join(str(r['drift_alerts']) for r in rs)} | "
              f"{', '.join(str(r['incidents_opened']) for r in rs)} | "
              f"{all(r['alerts_carry_the_id'] for r in rs)} | {spread:.1f} | "
              f"{sum(r['resolved'] for r in rs)}/{len(rs)} |")
    print(f"written {out}")


if __name__ == "__main__":
    main()
