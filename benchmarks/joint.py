"""Is a joint shift that no marginal shows caught by the ``joint`` signal, within the budget, and
what does it cost? (issue 21 item 5; docs/joint-drift.md)

    python benchmarks/joint.py [--seeds 0 1 2 3 4 5 6 7] [--events 12000] [--null-events 50000]

Seeded streams of stream_monitor.synth.correlated_stream (features ``a`` and ``b`` standard
normal with correlation ``rho``, ``others`` independent standard normal features, a prediction
that depends on ``x0`` only), each run through the whole core (``Monitor``, in-memory state;
every feature and the prediction watched by a calibrated cusum, the ``joint`` signal on; the
default budget of 1 false alarm per 1,000,000 events):

* **flip**: at the middle the correlation of ``a`` and ``b`` flips to ``-rho``; every
  marginal is unchanged. Reported per case: how many seeds the ``joint`` signal caught it in,
  the delay (events from the flip to the alarm), whether ``a`` and ``b`` are the first two
  features of the alert's evidence, and the alarms of any other signal (should be 0).
* **null**: no change, ``--null-events`` events per seed: every alarm is false; against the
  budget's expectation (events x 1e-6 per signal-set).
* **cost**: CPU seconds per 1,000 events of the core with and without ``joint`` (same
  events, interleaved runs, best of ``--repeat``), value by value and on the batch path.

Results JSON in benchmarks/results/joint-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.synth import correlated_stream, embedding_stream

ROOT = Path(__file__).resolve().parent
RULE = {"match": "joint-*", "signals": [{"match": "feature:*", "detectors": ["cusum"]},
                                        {"match": "prediction", "detectors": ["cusum"]}]}
BASE = {"detectors": {"cusum": {"type": "cusum"}},
        "windows": {"reference_size": 1000, "recent_size": 500},
        "false_alarm_budget": {"per_events": 1_000_000}}
CONFIG = {**BASE, "models": [{**RULE, "joint": {}}]}
PLAIN = {**BASE, "models": [RULE]}
EMB_RULE = {**RULE, "match": "emb-*"}
EMB = {**BASE, "models": [{**EMB_RULE, "embeddings": {}}]}
EMB_PLAIN = {**BASE, "models": [EMB_RULE]}


def _events(evs: list[dict[str, Any]]) -> list[InferenceEvent]:
    return [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                           Position("j", 0, i), timestamp=e["timestamp"],
                           embeddings=e.get("embeddings"))
            for i, e in enumerate(evs)]


def embedding(seed: int, n: int, shift: bool) -> dict[str, Any]:
    at = n // 2
    out = Monitor(parse_config(EMB)).process(
        _events(embedding_stream(n, seed, shift_at=at if shift else None)), MonitorState())
    emb = [a.detected_at.offset for a in out.alerts if a.signal == "embedding"]
    return {"seed": seed, "shift": shift, "alarms": emb,
            "delay": emb[0] - at if shift and emb and emb[0] >= at else None,
            "other_alarms": [[a.signal, a.detected_at.offset] for a in out.alerts
                             if a.signal != "embedding"]}


def flip(seed: int, n: int, rho: float, others: int) -> dict[str, Any]:
    at = n // 2
    out = Monitor(parse_config(CONFIG)).process(
        _events(correlated_stream(n, seed, flip_at=at, rho=rho, others=others)), MonitorState())
    joint = [a for a in out.alerts if a.signal == "joint"]
    first = joint[0] if joint else None
    top = [t["feature"] for t in first.evidence["joint"]["top"]] if first else []
    return {"seed": seed, "caught": bool(joint and first and first.detected_at.offset >= at),
            "delay": None if first is None else first.detected_at.offset - at,
            "before_flip": sum(1 for a in joint if a.detected_at.offset < at),
            "named_a_b_first": set(top[:2]) == {"a", "b"},
            "other_alarms": [[a.signal, a.detected_at.offset] for a in out.alerts
                             if a.signal != "joint"],
            "summary": None if first is None else first.summary}


def null(seed: int, n: int) -> dict[str, Any]:
    out = Monitor(parse_config(CONFIG)).process(
        _events(correlated_stream(n, 1000 + seed)), MonitorState())
    return {"seed": seed, "events": n, "joint_alarms": sum(a.signal == "joint"
                                                           for a in out.alerts),
            "all_alarms": len(out.alerts)}


def cost(n: int, repeat: int) -> dict[str, Any]:
    feats = _events(correlated_stream(n, 7))
    embs = _events(embedding_stream(n, 7))
    got: dict[str, list[float]] = {}
    for _ in range(repeat):
        for vectorised in (False, True):
            for name, cfg, evs in (("plain", PLAIN, feats), ("joint", CONFIG, feats),
                                   ("emb_plain", EMB_PLAIN, embs), ("embedding", EMB, embs)):
                mon, state = Monitor(parse_config(cfg)), MonitorState()
                mon.vectorised = vectorised
                t = time.process_time()
                for lo in range(0, n, 500):
                    mon.process(evs[lo:lo + 500], state)
                key = f"{name}{'_batch' if vectorised else '_loop'}"
                got.setdefault(key, []).append((time.process_time() - t) / n * 1000)
    best = {k: min(v) for k, v in got.items()}
    return {"events": n, "repeat": repeat, "cpu_s_per_1000_events": best,
            "ratio_loop": best["joint_loop"] / best["plain_loop"],
            "ratio_batch": best["joint_batch"] / best["plain_batch"],
            "ratio_embedding_batch": best["embedding_batch"] / best["emb_plain_batch"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--events", type=int, default=12_000)
    ap.add_argument("--null-events", type=int, default=50_000)
    ap.add_argument("--cost-events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    cases = []
    for rho, others in ((0.8, 4), (0.5, 4), (0.8, 16)):
        runs = [flip(s, args.events, rho, others) for s in args.seeds]
        delays = [r["delay"] for r in runs if r["caught"]]
        case = {"rho": rho, "others": others, "runs": runs,
                "caught": sum(r["caught"] for r in runs), "seeds": len(runs),
                "delay_median": statistics.median(delays) if delays else None,
                "delay_max": max(delays) if delays else None,
                "named_a_b_first": sum(r["named_a_b_first"] for r in runs),
                "other_alarms": sum(len(r["other_alarms"]) for r in runs)}
        cases.append(case)
        print(f"flip rho {rho:+.1f} -> {-rho:+.1f}, {2 + others} features: caught "
              f"{case['caught']}/{case['seeds']}, delay median {case['delay_median']} max "
              f"{case['delay_max']} events; a and b named first in {case['named_a_b_first']}; "
              f"other signals' alarms {case['other_alarms']}")
    embs = [embedding(s, args.events, True) for s in args.seeds]
    emb_nulls = [embedding(100 + s, args.events, False) for s in args.seeds]
    delays = [r["delay"] for r in embs if r["delay"] is not None]
    emb_case = {"runs": embs, "null_runs": emb_nulls, "caught": len(delays),
                "seeds": len(embs), "delay_median": statistics.median(delays) if delays else None,
                "delay_max": max(delays) if delays else None,
                "false_alarms": sum(len(r["alarms"]) for r in emb_nulls)
                + sum(1 for r in embs for o in r["alarms"] if o < args.events // 2),
                "other_alarms": sum(len(r["other_alarms"]) for r in embs + emb_nulls)}
    print(f"embeddings (64 dims, 8 latent factors, 16 projections), a latent correlation flip: "
          f"caught {emb_case['caught']}/{emb_case['seeds']}, delay median "
          f"{emb_case['delay_median']} max {emb_case['delay_max']} events; false embedding "
          f"alarms {emb_case['false_alarms']} over {2 * len(embs) * args.events} events "
          f"(before a shift or with none); other signals' alarms {emb_case['other_alarms']}")
    nulls = [null(s, args.null_events) for s in args.seeds]
    events = sum(r["events"] for r in nulls)
    joint_fa = sum(r["joint_alarms"] for r in nulls)
    all_fa = sum(r["all_alarms"] for r in nulls)
    print(f"null: {events} events over {len(nulls)} seeds: joint alarms {joint_fa}, all alarms "
          f"{all_fa} (budget: {events / 1e6:.2f} expected at most, all signals of a model)")
    c = cost(args.cost_events, args.repeat)
    b = c["cpu_s_per_1000_events"]
    print(f"cost (CPU s per 1,000 events, best of {c['repeat']}, 6 features): loop "
          f"{b['plain_loop']:.4f} -> {b['joint_loop']:.4f} (x{c['ratio_loop']:.2f}); batch "
          f"{b['plain_batch']:.4f} -> {b['joint_batch']:.4f} (x{c['ratio_batch']:.2f}); "
          f"embeddings of 64 on the batch path {b['emb_plain_batch']:.4f} -> "
          f"{b['embedding_batch']:.4f} (x{c['ratio_embedding_batch']:.2f}); "
          f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    res = {"args": vars(args), "load_average": [load, os.getloadavg()[0]], "flip": cases,
           "embedding": emb_case,
           "null": {"runs": nulls, "events": events, "joint_alarms": joint_fa,
                    "all_alarms": all_fa, "budget_expected": events / 1e6},
           "cost": c, "python": sys.version.split()[0]}
    out = ROOT / "results" / f"joint-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"results: {out.relative_to(ROOT.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
