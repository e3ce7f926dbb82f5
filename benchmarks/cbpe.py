"""Does the confidence-based performance estimate track the realized accuracy, and does it say
when it cannot? (issue 21 item 2; docs/probabilities.md)

    python benchmarks/cbpe.py [--seeds 1 2 3 4 5] [--events 20000] [--plot docs/img/cbpe.png]

Two seeded cases of stream_monitor.synth.classifier_stream (a calibrated 3-class classifier:
its probabilities are p(y | x); inline labels on every event), each run through the whole core
(``Monitor`` with in-memory state, calibration on the first 1,000 labelled events):

* **covariate shift** at the middle: the inputs shrink towards the class boundaries, accuracy
  falls from about 0.81 to 0.68, p(y | x) is unchanged. The estimate should track the realized
  accuracy (target: within 0.02 after the shift), ``performance:estimated_error`` should alert
  (before any label is needed) and ``estimate_gap`` should not.
* **concept drift** at the middle: 40% of the true classes are drawn at random instead; the
  probabilities do not know. The estimate (of the first calibration) is wrong by
  construction, ``estimate_gap`` should alert, and the estimate re-learned after it should
  track again (the last quarter of the run).

The baseline in the same run is the estimate of a monitor without probabilities: the accuracy
measured on the calibration reference, assumed to hold (its error after the shift is the
whole accuracy drop). Accuracies after the change are over all events after it (realized: the
events' labels; estimated: the mean of the calibrated accuracy at each event's confidence, as
``performance:estimated_error`` gets it). Quality, not speed: nothing is timed. Results JSON in
benchmarks/results/cbpe-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from stream_monitor.config import parse_config
from stream_monitor.contracts import InferenceEvent, Position
from stream_monitor.core.model_state import MonitorState
from stream_monitor.core.monitor import Monitor
from stream_monitor.synth import classifier_stream

ROOT = Path(__file__).resolve().parent
CONFIG = {"windows": {"reference_size": 1000, "recent_size": 2000},
          "false_alarm_budget": {"per_events": 1_000_000},
          "models": [{"match": "clf-*", "signals": [{"match": "feature:*",
                                                     "detectors": ["cusum"]}]}],
          "detectors": {"cusum": {"type": "cusum"}}}


def run_case(case: str, seed: int, n: int) -> dict[str, Any]:
    at = n // 2
    evs = classifier_stream(n, seed, covariate_at=at if case == "covariate" else None,
                            concept_at=at if case == "concept" else None)
    events = [InferenceEvent(e["event_id"], e["model_id"], e["features"], e["prediction"],
                             Position("clf", 0, i), timestamp=e["timestamp"],
                             label=e.get("label"), probabilities=e["probabilities"])
              for i, e in enumerate(evs)]
    mon, state = Monitor(parse_config(CONFIG)), MonitorState()
    estimated = np.full(n, np.nan)  # the live estimate (relearned after a gap alert)
    frozen = np.full(n, np.nan)  # the first fit's, had it never been relearned
    conf = [max(e["probabilities"].values()) for e in evs]
    first_fit = None
    alerts: list[tuple[str, int]] = []
    for lo in range(0, n, 100):
        out = mon.process(events[lo:lo + 100], state)
        alerts += [(a.signal, a.detected_at.offset) for a in out.alerts]
        est = state.models["clf-1"].estimate
        assert est is not None
        if est.calibration is not None:  # (the batch's events went through this fit)
            first_fit = first_fit or est.calibration
            for i in range(lo, min(lo + 100, n)):
                estimated[i] = 1.0 - est.calibration(conf[i])
        if first_fit is not None:
            for i in range(lo, min(lo + 100, n)):
                frozen[i] = 1.0 - first_fit(conf[i])
    correct = np.array([e["prediction"] == e["label"] for e in evs], dtype=float)
    calib = 1000  # the calibration reference: the first 1,000 labelled events
    before = slice(calib, at)
    after = slice(at, n)
    ref_accuracy = float(correct[:calib].mean())
    realized = float(correct[after].mean())
    est_acc = float(1.0 - np.nanmean(frozen[after]))
    tail = slice(n - n // 4, n)  # the last quarter: after any re-learning
    live_tail = float(1.0 - np.nanmean(estimated[tail]))

    def first(signal: str, since: int) -> int | None:
        hits = [o for s, o in alerts if s == signal and o >= since]
        return min(hits) - since if hits else None

    return {
        "case": case, "seed": seed, "events": n, "change_at": at,
        "realized_accuracy_before": float(correct[before].mean()),
        "estimated_accuracy_before": float(1.0 - np.nanmean(estimated[before])),
        "realized_accuracy_after": realized, "estimated_accuracy_after": est_acc,
        "estimate_error_after": est_acc - realized,
        "identity_calibration": first_fit is not None and first_fit.identity,
        "realized_accuracy_last_quarter": float(correct[tail].mean()),
        "live_estimate_last_quarter": live_tail,
        "fits": state.models["clf-1"].estimate.calibrations,
        "baseline_accuracy": ref_accuracy, "baseline_error_after": ref_accuracy - realized,
        "estimated_error_alert_delay": first("performance:estimated_error", at),
        "estimate_gap_alert_delay": first("estimate_gap", at),
        "false_alarms_before": sum(1 for _, o in alerts if o < at),
        "alerts": alerts,
        "rolling": {"realized": _rolling(correct), "estimated": _rolling(1.0 - estimated),
                    "frozen": _rolling(1.0 - frozen)},
    }


def _rolling(x: np.ndarray, w: int = 500) -> list[float | None]:
    out: list[float | None] = []
    for i in range(0, len(x), 100):
        window = x[max(0, i - w + 1):i + 1]
        window = window[~np.isnan(window)]
        out.append(float(window.mean()) if len(window) >= w // 2 else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args()
    rows = [run_case(case, s, args.events) for case in ("covariate", "concept")
            for s in args.seeds]
    print(f"load average {os.getloadavg()[0]:.1f}; {args.events} events a run, change at "
          f"{args.events // 2}; accuracies after the change")
    print("CBPE: the first fit's estimate; live: the estimate in the last quarter (re-learned "
          "after a gap alert); alerts: delay in events after the change")
    print(f"{'case':10} {'seed':>4} {'realized':>9} {'CBPE':>7} {'CBPE-real':>10} "
          f"{'baseline-real':>14} {'live-real':>10} {'fits':>4} {'est.alert':>9} "
          f"{'gap alert':>9} {'false':>5}")
    for r in rows:
        print(f"{r['case']:10} {r['seed']:>4} {r['realized_accuracy_after']:9.4f} "
              f"{r['estimated_accuracy_after']:7.4f} {r['estimate_error_after']:+10.4f} "
              f"{r['baseline_error_after']:+14.4f} "
              f"{r['live_estimate_last_quarter'] - r['realized_accuracy_last_quarter']:+10.4f} "
              f"{r['fits']:>4} {_fmt(r['estimated_error_alert_delay']):>9} "
              f"{_fmt(r['estimate_gap_alert_delay']):>9} {r['false_alarms_before']:>5}")
    for case in ("covariate", "concept"):
        sub = [r for r in rows if r["case"] == case]
        worst = max(abs(r["estimate_error_after"]) for r in sub)
        base = np.mean([abs(r["baseline_error_after"]) for r in sub])
        gaps = sum(r["estimate_gap_alert_delay"] is not None for r in sub)
        print(f"{case}: largest |CBPE - realized| after the change {worst:.4f}; baseline mean "
              f"|error| {base:.4f} (ratio {worst / base if base else float('nan'):.2f}); "
              f"estimate_gap alerted in {gaps}/{len(sub)} runs")
    out = ROOT / "results" / f"cbpe-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    out.write_text(json.dumps({"argv": sys.argv[1:], "load_average": os.getloadavg()[0],
                               "runs": [{k: v for k, v in r.items() if k != "rolling"}
                                        for r in rows]}, indent=1))
    print(f"results: {out.relative_to(ROOT.parent)}")
    if args.plot:
        _plot(rows, args.plot)
        print(f"figure: {args.plot}")


def _fmt(v: int | None) -> str:
    return "-" if v is None else str(v)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, case, title in zip(axes, ("covariate", "concept"),
                               ("covariate shift (estimate holds)",
                                "concept drift (estimate wrong)"), strict=True):
        r = next(x for x in rows if x["case"] == case)
        xs = np.arange(len(r["rolling"]["realized"])) * 100
        ax.plot(xs, [np.nan if v is None else v for v in r["rolling"]["realized"]],
                label="realized accuracy (labels)", color="black")
        ax.plot(xs, [np.nan if v is None else v for v in r["rolling"]["frozen"]],
                label="estimated (first calibration)", color="tab:blue")
        if case == "concept":
            ax.plot(xs, [np.nan if v is None else v for v in r["rolling"]["estimated"]],
                    label="estimated (re-learned after the gap alert)", color="tab:green",
                    ls="--")
        ax.axhline(r["baseline_accuracy"], color="grey", ls=":", label="reference accuracy")
        ax.axvline(r["change_at"], color="tab:red", ls="--", lw=1)
        for sig, color in (("performance:estimated_error", "tab:blue"),
                           ("estimate_gap", "tab:orange")):
            hits = [o for s, o in r["alerts"] if s == sig]
            for o in hits[:1]:
                ax.axvline(o, color=color, lw=1, alpha=0.7)
                ax.annotate(sig.split(":")[-1] + " alert", (o, 0.52), color=color, fontsize=8,
                            rotation=90, va="bottom")
        ax.set_title(f"{title}, seed {r['seed']}")
        ax.set_xlabel("event")
    axes[0].set_ylabel("accuracy (last 500 events)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
