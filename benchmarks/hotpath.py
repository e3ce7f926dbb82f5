"""Replay throughput of the core, value by value against the batch path (core/vector.py).

    python benchmarks/hotpath.py [--events 40000] [--fleet-models 2] [--fleet-events 20000]
                                 [--repeat 3]

Three workloads, each replayed (the file replay adapter: decode, quality gate, core, in-memory
state) with ``Monitor.vectorised`` off and on, alternately, ``--repeat`` times in the same run:

* **numeric**: 4 models with 10 numeric features and a numeric prediction per event (the
  synthetic stream of ``stream-monitor synth``, with its drifts), every signal watched by the
  calibrated ``cusum`` at the default budget;
* **credit**: the same stream under the example config (its ``credit-*`` rule: River's ADWIN
  and the project's Page-Hinkley on every signal, value rules with learned bounds and
  fault-rate signals), the workload of benchmarks/throughput.py;
* **fleet**: models of the synthetic fleet (stream_monitor/fleet.py) under the example config
  (value rules, fault-rate signals, a categorical feature, inline labels).

First, per detector (``Cusum``, ``BernoulliCusum``, ``PageHinkley``, ``ADWIN``): ``feed`` on
``--values`` values against ``update`` one by one. Then prints, per workload, the best events
per CPU second of each path, their ratio, and whether the two outputs (alerts, retrain
requests, ...) and final states are identical (they must be). CPU time rather than wall
time: the machines are shared. The figures and the load average go to
``benchmarks/results/hotpath-<date>-<time>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import load_config, parse_config
from stream_monitor.core.adwin import ADWIN
from stream_monitor.core.bernoulli import BernoulliCusum, calibrate_rate
from stream_monitor.core.cusum import Cusum
from stream_monitor.core.monitor import Monitor
from stream_monitor.core.page_hinkley import PageHinkley
from stream_monitor.fleet import write_fleet
from stream_monitor.synth import StreamSpec, generate

ROOT = Path(__file__).resolve().parents[1]
RESULTS: dict[str, Any] = {"detectors": {}, "workloads": {}}


def numeric_config() -> Any:
    return parse_config({
        "windows": {"reference_size": 1000, "recent_size": 500},
        "false_alarm_budget": {"per_events": 1_000_000},
        "detectors": {"cusum": {"type": "cusum"}},
        "models": [{"match": "*", "signals": [{"match": "feature:*", "detectors": ["cusum"]},
                                              {"match": "prediction", "detectors": ["cusum"]}]}],
    })


def replay(config: Any, path: Path, vectorised: bool) -> tuple[float, bytes, bytes]:
    """CPU seconds of one replay, its output and its final state (signals' checkpoints)."""
    Monitor.vectorised = vectorised
    out = io.BytesIO()
    states: list[Any] = []
    t0 = time.process_time()
    replay_file(config, path, out, state_out=states)
    dt = time.process_time() - t0
    Monitor.vectorised = True
    state = {f"{u}|{s}": [sig.meta(), list(sig.reference), list(sig.recent)]
             for u, m in states[0].models.items() for s, sig in m.signals.items()}
    return dt, out.getvalue(), orjson.dumps(state)


def compare(name: str, config: Any, path: Path, events: int, repeat: int) -> None:
    best = {False: float("inf"), True: float("inf")}
    outs: dict[bool, tuple[bytes, bytes]] = {}
    for _ in range(repeat):
        for vec in (False, True):
            dt, out, state = replay(config, path, vec)
            best[vec] = min(best[vec], dt)
            outs[vec] = (out, state)
    same = outs[False] == outs[True]
    slow, fast = events / best[False], events / best[True]
    RESULTS["workloads"][name] = {
        "events": events, "per_value_events_per_cpu_s": round(slow),
        "batch_events_per_cpu_s": round(fast), "ratio": round(fast / slow, 3),
        "identical": same, "drift_alerts": outs[True][0].count(b"drift_alert")}
    print(f"{name}: {events} events; per value {slow:,.0f} events/CPU-s, batch path "
          f"{fast:,.0f} events/CPU-s, ratio {fast / slow:.2f}; outputs and state identical: "
          f"{same} ({outs[True][0].count(b'drift_alert')} drift alerts)")


def detectors(n: int, repeat: int) -> None:
    """Per detector: ``feed`` on ``n`` values against ``update`` one by one (seeded streams:
    N(0,1) for the Cusum, Page-Hinkley and ADWIN (the config defaults), a 2% flag for the
    Bernoulli CUSUM; default thresholds, through every alarm)."""
    rng = np.random.default_rng(1)
    flags = (rng.random(n) < 0.02).astype(np.float64)
    over, _ = calibrate_rate(flags[:2000].tolist(), 1e-6, {})
    normal = rng.standard_normal(n)
    cases = (("Cusum", Cusum, normal),
             ("BernoulliCusum", lambda: BernoulliCusum(**over), flags),
             ("PageHinkley", lambda: PageHinkley(min_instances=30, delta=0.25, threshold=30.0,
                                                 alpha=1.0), normal),
             ("ADWIN", lambda: ADWIN(delta=0.002, clock=32), normal))
    for name, make, xs in cases:
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeat):
            for vec in (False, True):
                det, pos = make(), 0
                t0 = time.process_time()
                while pos < n:
                    if vec:
                        pos += det.feed(xs[pos:])
                    else:
                        for x in xs[pos:].tolist():
                            pos += 1
                            det.update(x)
                            if det.drift_detected:
                                break
                best[vec] = min(best[vec], time.process_time() - t0)
        RESULTS["detectors"][name] = {
            "values": n, "update_values_per_cpu_s": round(n / best[False]),
            "feed_values_per_cpu_s": round(n / best[True]),
            "ratio": round(best[False] / best[True], 3)}
        print(f"{name}: {n} values; update {n / best[False]:,.0f} values/CPU-s, feed "
              f"{n / best[True]:,.0f} values/CPU-s, ratio {best[False] / best[True]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--fleet-models", type=int, default=2)
    ap.add_argument("--fleet-events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--values", type=int, default=200_000, help="per detector")
    args = ap.parse_args()
    detectors(args.values, args.repeat)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "numeric.jsonl"
        spec = StreamSpec(models=("credit-a", "credit-b", "credit-c", "credit-d"),
                          events_per_model=args.events // 4)
        with path.open("wb") as f:
            for line in generate(spec):
                f.write(line + b"\n")
        compare("numeric (10 features + prediction)", numeric_config(), path,
                spec.events_per_model * 4, args.repeat)
        compare("credit (10 features + prediction, example config: ADWIN + Page-Hinkley, "
                "value rules)", load_config(ROOT / "stream_monitor" / "examples" / "monitor.yaml"),
                path, spec.events_per_model * 4, args.repeat)
        fleet = Path(d) / "fleet.jsonl"
        write_fleet(fleet, 1, range(args.fleet_models), args.fleet_events)
        compare(f"fleet ({args.fleet_models} models, example config)",
                load_config(ROOT / "stream_monitor" / "examples" / "monitor.yaml"), fleet,
                args.fleet_models * args.fleet_events, args.repeat)
    now = dt.datetime.now().astimezone()
    RESULTS.update(date=now.isoformat(timespec="seconds"), args=vars(args),
                   loadavg_at_end=list(os.getloadavg()), cpu="process_time (best of repeats)")
    out = ROOT / "benchmarks" / "results" / f"hotpath-{now:%Y-%m-%d-%H%M%S}.json"
    out.write_bytes(orjson.dumps(RESULTS, option=orjson.OPT_INDENT_2))
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
