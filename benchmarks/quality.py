"""Detection quality: false alarms on stationary streams of many kinds vs the budget, and
delays / localization errors on shifts, all through `stream-monitor evaluate`'s code.

Every stream comes from ``stream_monitor.synth.kind_stream`` (seeded; 11 kinds: Gaussian,
AR(1) 0.9, Student t 3 and 2, Cauchy, Poisson 0.7, binary 10% and 2%, lognormal, bimodal, a
cycle of 200 values). Each scenario writes one events file with one model per seed (feature
``x``), a change-point file, and runs ``stream_monitor.evaluate.evaluate`` with a config whose
catch-all rule watches ``feature:*`` with the calibrated ``cusum`` under a budget.

    .venv/bin/python benchmarks/quality.py                # full run, ~15 min on 2 cores
    .venv/bin/python benchmarks/quality.py --quick        # a smoke run, ~1 min
    .venv/bin/python benchmarks/quality.py --replot benchmarks/results/quality-<stamp>.json
    .venv/bin/python benchmarks/quality.py --rates        # binary signals only (see below)
    .venv/bin/python benchmarks/quality.py --numeric      # numeric fleet false alarms + delays
    .venv/bin/python benchmarks/quality.py --categories   # categorical signals only (issue 18)

``--numeric`` is a mode of its own (functions ``numeric_*`` below): false alarms of the ``cusum``
detector on a fleet of autocorrelated non-Gaussian numeric signals (an AR(1) latent, coefficient
drawn from 0.5-0.95 per stream, through a t3, lognormal, Poisson, bimodal, uniform or Gaussian
marginal; an AR(1) with t3 innovations; a logistic score of three such features), fed to the
core's SignalState with the default windows and a rebaseline after each alarm, at budgets of
1 per 10,000 and 1 per 1,000,000; and the Gaussian delay rows (0.5 sd, 1 sd, variance x2, a ramp
of 1 sd over 2,000 values) through `stream-monitor evaluate`'s code over many seeds.

Writes benchmarks/results/quality-<stamp>.json, docs/img/quality.png and prints a markdown
table (also written to benchmarks/results/quality-<stamp>.md).

``--fleet``: seeded fleets (``stream_monitor.fleet``) of stationary models with ten features of
mixed kinds, a logistic prediction and inline labels, replayed through the example config
unchanged; everything it emits is false. Per seed: false drift alerts (by signal kind) against
the budget's expected count and its Poisson 95% bound, false data-quality alerts, false retrain
requests (``--mix-*`` options; ``--quick``: 2 seeds x 8 models x 5,000 events). Writes
benchmarks/results/fleet-<stamp>.{json,md} and docs/img/fleet.png.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream_monitor.config import parse_config  # noqa: E402
from stream_monitor.contracts.records import InferenceEvent, Position  # noqa: E402
from stream_monitor.core.model_state import MonitorState  # noqa: E402
from stream_monitor.core.monitor import Monitor  # noqa: E402
from stream_monitor.evaluate import ChangePoint, evaluate  # noqa: E402
from stream_monitor.synth import KINDS, category_stream, kind_stream  # noqa: E402

REFERENCE = 1000
SHORT = 200  # windows.reference_min_size: watched from here on a short reference
TARGET_KIND = "gaussian"  # the delay targets, measured over many more seeds
SHIFT_KINDS = ("gaussian", "ar1", "student_t3", "cauchy", "poisson", "binary", "lognormal",
               "bimodal", "cycle")
SHIFTS = (("mean", 1.0, "1 sd shift"), ("mean", 0.5, "0.5 sd shift"),
          ("spread", 2 ** 0.5, "variance x2"))


def write_results(name: str, res: dict[str, Any], markdown_table: str | None = None,
                  tail: str = "") -> Path:
    """``benchmarks/results/<name>-<stamp><tail>.json`` (and the ``.md`` table beside it when
    given); returns the JSON's path."""
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y-%m-%d-%H%M%S')}{tail}"
    (out / f"{stem}.json").write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    if markdown_table is not None:
        (out / f"{stem}.md").write_text(markdown_table)
    return out / f"{stem}.json"


def config(per_events: float, reference: int = REFERENCE, short: int = SHORT) -> Any:
    return parse_config({
        "windows": {"reference_size": reference, "reference_min_size": short,
                    "recent_size": 500},
        "false_alarm_budget": {"per_events": per_events},
        "detectors": {"cusum": {"type": "cusum"}},
        "models": [{"match": "*", "signals": [{"match": "feature:*", "detectors": ["cusum"]}]}],
    })


def write_events(path: Path, streams: Mapping[str, Sequence[Any]], where: str = "feature"
                 ) -> None:
    """One model per stream, interleaved line by line: each value as feature ``x`` (with a
    prediction of 0.0), or (``where="prediction"``) as the prediction, with no features."""
    n = max(len(v) for v in streams.values())
    with path.open("wb") as f:
        for i in range(n):
            for model, xs in streams.items():
                if i < len(xs):
                    ev: dict[str, Any] = {"event_id": f"{model}-{i}", "model_id": model,
                                          "timestamp": 1_767_225_600.0 + i}
                    if where == "feature":
                        ev.update(features={"x": xs[i]}, prediction=0.0)
                    else:
                        ev.update(features={}, prediction=xs[i])
                    f.write(orjson.dumps(ev) + b"\n")


def stationary(kind: str, seeds: int, n: int, per_events: float, tmp: Path,
               reference: int = REFERENCE, base: int = 1000) -> dict[str, Any]:
    """False alarms on stationary streams. With the default windows a signal is watched from
    value SHORT on (a short reference, re-based at REFERENCE); with ``reference=SHORT`` the
    reference stays short for good (a short series' own reference_size)."""
    # Seeds differ by kind too: many kinds transform the same normal draws, and shared seeds
    # would make their false alarms coincide.
    base = base + 100 * KINDS.index(kind)
    streams = {f"{kind}-{s}": kind_stream(kind, n, base + s) for s in range(seeds)}
    path = tmp / f"stationary-{kind}.jsonl"
    write_events(path, streams)
    ev = evaluate(config(per_events, reference), path, [], margin=1)
    fa = sum(s.false_alarms for s in ev.signals)
    per_seed = [s.false_alarms for s in ev.signals]
    watched = seeds * (n - SHORT)  # values after the first short reference
    return {"kind": kind, "values": watched, "false_alarms": fa, "reference": reference,
            "per_10k": fa / watched * 1e4, "budget_per_10k": 1e4 / per_events,
            "max_per_stream": max(per_seed, default=0),
            "streams_with_alarms": sum(1 for c in per_seed if c)}


def shifted(kind: str, change: str, size: float, seeds: int, per_events: float,
            tmp: Path, base: int = 5000) -> dict[str, Any]:
    at, n = 2000, 3500
    base = base + 100 * KINDS.index(kind)
    streams = {f"{kind}-{s}": kind_stream(kind, n, base + s, change_at=at, change=change,
                                          size=size) for s in range(seeds)}
    path = tmp / f"shift-{kind}-{change}-{size:.2f}.jsonl"
    write_events(path, streams)
    want = "spread" if change == "spread" else ("rate" if kind == "binary" else "mean")
    cps = [ChangePoint(m, "feature:x", event_id=f"{m}-{at}", kind=want) for m in streams]
    ev = evaluate(config(per_events), path, cps, margin=n - at)
    summ = ev.summary()
    delays = [d for s in ev.signals for d in s.delays]
    locs = [e for s in ev.signals for e in s.localization_errors]
    return {"kind": kind, "change": change, "size": size, "seeds": seeds,
            "detected": summ["detected"], "misses": summ["misses"],
            "false_alarms": summ["false_alarms"], "median_delay": _med(delays),
            "p90_delay": summ["p90_delay"], "median_loc_error": _med(locs),
            "p90_loc_error": summ["p90_localization_error"],
            "kind_right": summ["kinds_right"], "kind_checked": summ["kinds_checked"],
            "delays": delays, "loc_errors": locs}


def _med(xs: list[int]) -> float | None:
    return float(statistics.median(xs)) if xs else None


def _f(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(res: dict[str, Any]) -> str:
    out = ["### False alarms on stationary streams (per 10,000 watched values)", "",
           "| stream | " + " | ".join(f"budget 1 per {int(b):,}" for b in res["budgets"]) + " |",
           "|---|" + "---|" * len(res["budgets"])]
    for kind in res["kinds"]:
        cells = []
        for b in res["budgets"]:
            r = next(x for x in res["stationary"] if x["kind"] == kind and x["per_events"] == b)
            cells.append(f"{r['per_10k']:.3f} ({r['false_alarms']} in {r['values']:,}; "
                         f"budget {r['budget_per_10k']:.2g})")
        out.append(f"| {kind} | " + " | ".join(cells) + " |")
    out += ["", f"### Changes at the default budget (1 per 1,000,000), {res['shift_seeds']} "
            "seeds each", "",
            "| stream | change | detected | median delay | p90 delay | median loc. error | "
            "p90 loc. error | kind named right | false alarms before |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in res["shifts"]:
        out.append(_shift_row(r))
    if res.get("short"):
        out += ["", f"### Short references: reference_size {SHORT} for good, budget 1 per 10,000 "
                f"({res['short_seeds']} streams of {res['short_events']:,} values per kind)", "",
                "| stream | false alarms per 10,000 | alarms in values | streams with alarms | "
                "most in one stream |", "|---|---|---|---|---|"]
        for r in res["short"]:
            out.append(f"| {r['kind']} | {r['per_10k']:.3f} (budget {r['budget_per_10k']:.2g}) | "
                       f"{r['false_alarms']} in {r['values']:,} | {r['streams_with_alarms']} | "
                       f"{r['max_per_stream']} |")
    if res.get("targets"):
        out += ["", f"### Targets ({TARGET_KIND}, default budget), {res['target_seeds']} seeds "
                "each (seeds disjoint from the table above)", "",
                "| stream | change | detected | median delay | p90 delay | median loc. error | "
                "p90 loc. error | kind named right | false alarms before |",
                "|---|---|---|---|---|---|---|---|---|"]
        out += [_shift_row(r) for r in res["targets"]]
    return "\n".join(out) + "\n"


def _shift_row(r: dict[str, Any]) -> str:
    return (f"| {r['kind']} | {r['label']} | {r['detected']}/{r['seeds']} | "
            f"{_f(r['median_delay'])} | {_f(r['p90_delay'])} | "
            f"{_f(r['median_loc_error'])} | {_f(r['p90_loc_error'])} | "
            f"{r['kind_right']}/{r['kind_checked']} | {r['false_alarms']} |")


def plot(res: dict[str, Any], image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 8))
    kinds = res["kinds"]
    series = [(f"measured, budget 1 per {int(b):,}",
               [next(x["per_10k"] for x in res["stationary"]
                     if x["kind"] == k and x["per_events"] == b) for k in kinds], b)
              for b in res["budgets"]]
    if res.get("short"):
        series.append((f"reference {SHORT} for good, budget 1 per 10,000",
                       [next(x["per_10k"] for x in res["short"] if x["kind"] == k)
                        for k in kinds], 10_000.0))
    width = 0.8 / len(series)
    for j, (label, vals, _) in enumerate(series):
        xs = [i + j * width for i in range(len(kinds))]
        axes[0].bar(xs, vals, width=width, label=label, color=f"C{j}")
    for b in sorted(set(res["budgets"])):
        axes[0].hlines(1e4 / b, -0.3, len(kinds), linestyles="dashed", colors="k" if b ==
                       10_000.0 else "grey", label=f"budget {1e4 / b:g} per 10k")
    axes[0].set_xticks([i + 0.4 - width / 2 for i in range(len(kinds))])
    axes[0].set_xticklabels(kinds, rotation=40, ha="right")
    axes[0].set_ylabel("false alarms per 10,000 values")
    axes[0].set_title("stationary streams: false alarms vs budget")
    axes[0].legend(fontsize=8)
    rows = [(r, f"{r['kind']}: {r['label']}") for r in res["shifts"]]
    rows += [(r, f"{r['kind']}: {r['label']} ({r['seeds']} seeds)")
             for r in res.get("targets", [])]
    labels = [f"{name}  [{r['detected']}/{r['seeds']}]" for r, name in rows]
    data = [r["delays"] or [float("nan")] for r, _ in rows]  # none detected: no box
    axes[1].boxplot(data, orientation="horizontal", showfliers=False)
    axes[1].set_yticks(range(1, len(labels) + 1))
    axes[1].set_yticklabels(labels, fontsize=7)
    for x, what in ((40, "1 sd target"), (150, "0.5 sd target"), (300, "variance x2 target")):
        axes[1].axvline(x, color="grey", linestyle=":", linewidth=1)
        axes[1].text(x, len(labels) + 0.6, what, fontsize=7, rotation=90, va="bottom")
    axes[1].set_xlabel("detection delay (values), default budget; [detected/streams]")
    axes[1].set_title("delay by stream and change", pad=50)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=100)
    plt.close(fig)


# -- --numeric: a fleet of numeric signals, and the delay rows ---------------------------------

NUMERIC_FLEET = ("gaussian", "t3", "lognormal", "poisson", "bimodal", "uniform", "ar_t3",
                 "prediction")


def numeric_fleet_stream(kind: str, n: int, seed: int) -> Any:
    """``n`` stationary values of a fleet signal of ``kind`` (numpy array), seeded."""
    from scipy import signal as sps
    from scipy import special, stats

    rng = np.random.default_rng(seed)

    def ar1(phi: float, innov: Any = None) -> Any:
        e = (rng.standard_normal(n) if innov is None else innov) * np.sqrt(1 - phi * phi)
        return sps.lfilter([1.0], [1.0, -phi], e, zi=[phi * rng.standard_normal()])[0]

    phi = rng.uniform(0.5, 0.95)
    if kind == "prediction":  # a logistic score of three autocorrelated features
        f = [ar1(rng.uniform(0.5, 0.95)) for _ in range(3)]
        return 1 / (1 + np.exp(-(0.8 * f[0] - 0.6 * f[1] + 0.4 * np.exp(0.5 * f[2]) - 1.0)))
    if kind == "ar_t3":
        return ar1(phi, rng.standard_t(3, n) / np.sqrt(3))
    z = ar1(phi)
    p = special.ndtr(z)
    if kind == "gaussian":
        return z
    if kind == "t3":
        return stats.t.ppf(p, 3)
    if kind == "lognormal":
        return np.exp(0.75 * z)
    if kind == "poisson":
        return stats.poisson.ppf(p, 3.0)
    if kind == "bimodal":
        grid = np.linspace(-4, 4, 4001)
        cdf = 0.5 * special.ndtr((grid + 1.5) / 0.5) + 0.5 * special.ndtr((grid - 1.5) / 0.5)
        return np.interp(p, cdf, grid)
    if kind == "uniform":
        return p
    raise ValueError(kind)


def numeric_fleet(kind: str, seeds: int, n: int, per_events: float, base: int) -> dict[str, Any]:
    """False alarms of a `cusum` under ``per_events`` on ``seeds`` stationary streams of ``kind``
    (seeds ``base + 1000 * kind index + 0..seeds-1``), through SignalState as the monitor runs it
    (watched from value SHORT, re-based at REFERENCE, a new reference after each alarm)."""
    from collections import deque

    from stream_monitor.core.signals import SignalState

    base += 1000 * NUMERIC_FLEET.index(kind)
    alarms, per_seed = 0, []
    for s in range(seeds):
        sig = SignalState(signal="feature:x", detector_names=("cusum",),
                          detector_params=({"__type__": "cusum"},), binary=(False,),
                          reference_size=REFERENCE, recent=deque(maxlen=500),
                          budget=1.0 / per_events, budget_config={}, reference_min=SHORT)
        count = 0
        for i, x in enumerate(numeric_fleet_stream(kind, n, base + s).tolist()):
            if sig.update(x) >= 0:
                count += 1
                sig.rebaseline(i)
        alarms += count
        per_seed.append(count)
    values = seeds * (n - SHORT)
    return {"kind": kind, "per_events": per_events, "seeds": seeds, "seed_base": base,
            "values": values, "false_alarms": alarms, "expected": values / per_events,
            "per_10k": alarms / values * 1e4, "streams_with_alarms": sum(1 for c in per_seed if c)}


def numeric_delay(change: str, size: float, seeds: int, tmp: Path, base: int) -> dict[str, Any]:
    """Delay and localization error on Gaussian streams at the default budget: a shift
    (``mean``), a variance change (``spread``), or a ``ramp`` of ``size`` sd over 2,000 values,
    at value 2,000 (after the re-base), seeds ``base + 0..seeds-1``."""

    at, n = 2000, 4000 if change == "ramp" else 3500
    streams = {}
    for s in range(seeds):
        if change == "ramp":
            x = np.asarray(kind_stream("gaussian", n, base + s))
            x[at:] += size * np.minimum(np.arange(n - at) / 2000.0, 1.0)
            streams[f"g-{s}"] = [round(float(v), 6) for v in x]
        else:
            streams[f"g-{s}"] = kind_stream("gaussian", n, base + s, change_at=at,
                                            change=change, size=size)
    path = tmp / f"numeric-{change}-{size:.2f}.jsonl"
    write_events(path, streams)
    want = "spread" if change == "spread" else "mean"
    cps = [ChangePoint(m, "feature:x", event_id=f"{m}-{at}", kind=want) for m in streams]
    ev = evaluate(config(1_000_000.0), path, cps, margin=n - at)
    summ = ev.summary()
    delays = [d for sg in ev.signals for d in sg.delays]
    locs = [e for sg in ev.signals for e in sg.localization_errors]
    return {"change": change, "size": size, "seeds": seeds, "seed_base": base,
            "detected": summ["detected"], "false_alarms": summ["false_alarms"],
            "median_delay": _med(delays), "p90_delay": summ["p90_delay"],
            "median_loc_error": _med(locs), "p90_loc_error": summ["p90_localization_error"]}


def numeric_slow_cycle(period: int, amplitude: float, seeds: int, n: int,
                       base: int) -> dict[str, Any]:
    """Alerts of an undeclared cycle longer than the reference: ``amplitude * sin(2 pi i /
    period)`` plus N(0,1) noise (seeds ``base + 0..seeds-1``), `cusum` at the default budget and
    windows through SignalState, a new reference after each alert: alerts per swing (half
    cycle)."""
    from collections import deque

    from stream_monitor.core.signals import SignalState

    alerts = 0
    for s in range(seeds):
        rng = np.random.default_rng(base + s)
        x = amplitude * np.sin(2 * np.pi * np.arange(n) / period) + rng.standard_normal(n)
        sig = SignalState(signal="feature:x", detector_names=("cusum",),
                          detector_params=({"__type__": "cusum"},), binary=(False,),
                          reference_size=REFERENCE, recent=deque(maxlen=500),
                          budget=1e-6, budget_config={}, reference_min=SHORT)
        for i, v in enumerate(x.tolist()):
            if sig.update(v) >= 0:
                alerts += 1
                sig.rebaseline(i)
    swings = seeds * 2 * n / period
    return {"period": period, "amplitude": amplitude, "seeds": seeds, "seed_base": base,
            "values": seeds * n, "alerts": alerts, "per_swing": alerts / swings}


def numeric_main(args: Any) -> None:
    t0 = time.perf_counter()
    res: dict[str, Any] = {"fleet": [], "delays": []}
    for per_events, seeds in ((10_000.0, args.fleet_seeds_low), (1_000_000.0, args.fleet_seeds)):
        for kind in NUMERIC_FLEET if seeds else ():
            r = numeric_fleet(kind, seeds, args.fleet_events, per_events, 107_000)
            res["fleet"].append(r)
            print(f"fleet {kind:10s} budget 1/{int(per_events):>9,}: {r['false_alarms']:3d} in "
                  f"{r['values']:,} values (budget {r['expected']:.1f}; seeds {r['seed_base']}"
                  f"+0..{seeds - 1})", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        for change, size, label in (("mean", 1.0, "1 sd shift"), ("mean", 0.5, "0.5 sd shift"),
                                    ("spread", 2 ** 0.5, "variance x2"),
                                    ("ramp", 1.0, "ramp 1 sd over 2,000")):
            r = numeric_delay(change, size, args.delay_seeds, Path(d), 190_000)
            r["label"] = label
            res["delays"].append(r)
            print(f"delay {label:22s}: detected {r['detected']}/{r['seeds']}, median "
                  f"{r['median_delay']}, p90 {r['p90_delay']}, median loc. error "
                  f"{r['median_loc_error']}", file=sys.stderr)
    res["slow_cycles"] = []
    for period, amplitude in ((5000, 1.0), (5000, 0.5), (20_000, 1.0)):
        r = numeric_slow_cycle(period, amplitude, args.cycle_seeds, 40_000, 300_000)
        res["slow_cycles"].append(r)
        print(f"slow cycle of {period} values, amplitude {amplitude}: {r['alerts']} alerts, "
              f"{r['per_swing']:.2f} per swing", file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    lines = ["| signal | budget | false alarms | values | budget allows | seeds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | 1 per {int(r['per_events']):,} | {r['false_alarms']} | "
              f"{r['values']:,} | {r['expected']:.1f} | {r['seed_base']}+0..{r['seeds'] - 1} |"
              for r in res["fleet"]]
    lines += ["", "| gaussian change | detected | median delay | p90 delay | median loc. error | "
              "p90 loc. error | seeds |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['detected']}/{r['seeds']} | {_f(r['median_delay'])} | "
              f"{_f(r['p90_delay'])} | {_f(r['median_loc_error'])} | {_f(r['p90_loc_error'])} | "
              f"{r['seed_base']}+0..{r['seeds'] - 1} |" for r in res["delays"]]
    lines += ["", "| undeclared cycle (values) | amplitude (noise sd) | alerts | per swing | "
              "seeds |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['period']:,} | {r['amplitude']} | {r['alerts']} in {r['values']:,} | "
              f"{r['per_swing']:.2f} | {r['seed_base']}+0..{r['seeds'] - 1} |"
              for r in res["slow_cycles"]]
    written = write_results("quality-numeric", res, "\n".join(lines))
    print("\n".join(lines))
    print(f"({res['seconds']} s; wrote {written})", file=sys.stderr)

# -- categories (issue 18): categorical features and class-label predictions -------------------
# Self-contained: its own config, events and scenarios; `--categories` runs only this section.

CAT_MIX = ([0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4])  # total variation 0.3 over 4 categories
CLASS_MIX = ([0.6, 0.3, 0.1], [0.4, 0.3, 0.3])  # class labels, total variation 0.2
RARE = [0.55, 0.3, 0.12, 0.02, 0.0075, 0.0025]  # 6 categories, three at 2%, 0.75%, 0.25%
CAT_STATIONARY = (  # name, shares, stay (sticky Markov chain: repeat the last with this prob.)
    ("4 categories", CAT_MIX[0], 0.0),
    ("6 with rare levels", RARE, 0.0),
    ("sticky 0.5", CAT_MIX[0], 0.5),
    ("sticky 0.9", CAT_MIX[0], 0.9),
    ("rare, sticky 0.8", RARE, 0.8),
)


def category_config(per_events: float) -> Any:
    """The default windows and budget; string features as categories (the value rules'
    ``categorical``); every signal under the calibrated default detector."""
    return parse_config({
        "windows": {"reference_size": REFERENCE, "reference_min_size": SHORT,
                    "recent_size": 500},
        "false_alarm_budget": {"per_events": per_events},
        "detectors": {"cusum": {"type": "cusum"}, "adwin": {"type": "adwin"}},
        "models": [{"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}],
                    "quality": {"categorical": True}}],
    })


def category_stationary(name: str, shares: list[float], stay: float, seeds: int, n: int,
                        tmp: Path, base: int = 30_000,
                        per_events: float = 1_000_000.0) -> dict[str, Any]:
    """False alarms of ``feature:x`` on stationary category streams vs the budget (1 false
    alarm per ``per_events`` values)."""
    streams = {f"cat{i}-{s}": category_stream(shares, n, base + 1000 * i + s, stay=stay)
               for i, (nm, _, _) in enumerate(CAT_STATIONARY) if nm == name
               for s in range(seeds)}
    path = tmp / f"cat-stationary-{len(name)}-{stay}.jsonl"
    write_events(path, streams)
    ev = evaluate(category_config(per_events), path, [], margin=1)
    per_seed = [s.false_alarms for s in ev.signals if s.signal == "feature:x"]
    watched = seeds * (n - SHORT)
    fa = sum(per_seed)
    return {"stream": name, "stay": stay, "seeds": seeds, "values": watched,
            "budget_per_events": per_events,
            "false_alarms": fa, "budget_alarms": watched / per_events,
            "streams_with_alarms": sum(1 for c in per_seed if c)}


def category_shift(name: str, where: str, mix: tuple[list[float], list[float]], seeds: int,
                   tmp: Path, base: int = 40_000) -> dict[str, Any]:
    """Delay (values after the change) of the one alert on a category mix change at value
    2000 (after the full reference), and how many alerts each change gave."""
    at, n = 2000, 3000
    signal = "feature:x" if where == "feature" else "prediction"
    streams = {f"{where}-{s}": category_stream(mix[0], n, base + s, change_at=at, after=mix[1])
               for s in range(seeds)}
    path = tmp / f"cat-shift-{where}.jsonl"
    write_events(path, streams, where)
    cps = [ChangePoint(m, signal, event_id=f"{m}-{at}", kind="category_mix") for m in streams]
    ev = evaluate(category_config(1_000_000.0), path, cps, margin=n - at)
    scores = [s for s in ev.signals if s.signal == signal]
    delays = [d for s in scores for d in s.delays]
    locs = [e for s in scores for e in s.localization_errors]
    after = [sum(1 for a in s.alerts if a["index"] > at) for s in scores]
    return {"scenario": name, "signal": signal, "seeds": seeds,
            "detected": sum(s.detected for s in scores),
            "false_alarms": sum(s.false_alarms for s in scores),
            "median_delay": _med(delays),
            "p90_delay": sorted(delays)[int(0.9 * (len(delays) - 1))] if delays else None,
            "median_loc_error": _med(locs),
            "alerts_per_change_max": max(after, default=0),
            "changes_with_one_alert": sum(1 for c in after if c == 1),
            "kind_right": sum(s.kinds_right for s in scores)}


def categories(seeds: int, shift_seeds: int, events: int, part: str = "all",
               per_events: float = 1_000_000.0) -> dict[str, Any]:
    """The categories section: stationary streams (false alarms) and the two mix changes
    (``part``: both, or only ``stationary`` or ``shifts``)."""
    out: dict[str, Any] = {"stationary": [], "shifts": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, shares, stay in CAT_STATIONARY if part != "shifts" else ():
            r = category_stationary(name, shares, stay, seeds, events, tmp,
                                    per_events=per_events)
            out["stationary"].append(r)
            print(f"  stationary {name}: {r['false_alarms']} false alarms in {r['values']} "
                  f"values (budget {r['budget_alarms']:.1f})", file=sys.stderr)
        for name, where, mix in (("category mix TV 0.3, 4 categories", "feature", CAT_MIX),
                                 ("class-label prediction TV 0.2", "prediction", CLASS_MIX),
                                 ) if part != "stationary" else ():
            r = category_shift(name, where, mix, shift_seeds, tmp)
            out["shifts"].append(r)
            print(f"  {name}: median delay {r['median_delay']}", file=sys.stderr)
    return out


def categories_markdown(res: dict[str, Any]) -> str:
    lines = ["| stationary categorical stream | budget (1 per) | values watched | false alarms | "
             "budget allows |", "|---|---:|---:|---:|---:|"]
    for r in res["stationary"]:
        lines.append(f"| {r['stream']} ({r['seeds']} seeds) | {r['budget_per_events']:,.0f} | "
                     f"{r['values']:,} | {r['false_alarms']} | {r['budget_alarms']:.1f} |")
    lines += ["", "| mix change | seeds | detected | median delay | p90 delay | "
              "median start error | alerts per change (max) | false alarms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["shifts"]:
        lines.append(f"| {r['scenario']} (`{r['signal']}`) | {r['seeds']} | {r['detected']} | "
                     f"{_f(r['median_delay'])} | {_f(r['p90_delay'])} | "
                     f"{_f(r['median_loc_error'])} | {r['alerts_per_change_max']} | "
                     f"{r['false_alarms']} |")
    return "\n".join(lines)


def categories_main(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    res = categories(args.cat_seeds, args.cat_shift_seeds, args.cat_events, args.cat_part,
                     args.cat_budget)
    res.update(seeds=args.cat_seeds, shift_seeds=args.cat_shift_seeds, events=args.cat_events,
               seconds=round(time.perf_counter() - t0, 1))
    tail = "" if args.cat_part == "all" else f"-{args.cat_part}"
    tail += "" if args.cat_budget == 1_000_000.0 else f"-budget{args.cat_budget:.0f}"
    written = write_results("quality-categories", res, tail=tail)
    print(categories_markdown(res))
    print(f"({res['seconds']} s; wrote {written})", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Fleet mode: many stationary models of mixed signal kinds through the default config.

FLEET_CONFIG = ROOT / "stream_monitor" / "examples" / "monitor.yaml"


def fleet_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--mix-models", type=int, default=50, help="models per seed")
    g.add_argument("--mix-events", type=int, default=20_000, help="events per model")
    g.add_argument("--mix-seeds", type=int, default=5, help="fleets (seeds) to run")
    g.add_argument("--mix-first-seed", type=int, default=1, help="seed of the first fleet")
    g.add_argument("--mix-interval", type=float, default=1.0,
                   help="seconds of event time between two events of a model")
    g.add_argument("--mix-config", type=Path, default=FLEET_CONFIG,
                   help="the monitoring config (default: the example config, unchanged)")
    g.add_argument("--mix-chunk", type=int, default=10, help="models per replay task")
    g.add_argument("--mix-workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes replaying tasks in parallel")
    g.add_argument("--mix-image", type=Path, default=ROOT / "docs" / "img" / "fleet.png")
    g.add_argument("--mix-probabilities", action="store_true",
                   help="events also carry their score as class probabilities "
                   "(docs/probabilities.md): their signals join the count")
    g.add_argument("--mix-replot", type=Path, metavar="JSON",
                   help="only redraw the plot and the table from a fleet results file")


def fleet_task(seed: int, models: Sequence[int], events: int, interval: float,
               config_path: Path, probabilities: bool = False) -> dict[str, Any]:
    from stream_monitor.config import load_config
    from stream_monitor.fleet import replay_fleet

    return replay_fleet(load_config(config_path), seed, models, events, interval,
                        probabilities)


def fleet_summary(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed: the false alerts and requests, by kind, against the budget."""
    from stream_monitor.fleet import poisson_upper

    seeds: dict[int, dict[str, Any]] = {}
    for p in sorted(parts, key=lambda p: (p["seed"], p["models"][0])):
        s = seeds.setdefault(p["seed"], {"seed": p["seed"], "models": 0, "events": 0,
                                          "drift": 0, "drift_by_kind": {}, "quality": 0,
                                          "retrain": 0, "retrain_rules": {}, "expected": 0.0,
                                          "expected_by_kind": {}, "expected_quality": 0.0,
                                          "not_watchable": 0, "seconds": 0.0})
        s["models"] += len(p["models"])
        s["events"] += p["events"]
        s["seconds"] += p["seconds"]
        s["drift"] += len(p["drift"])
        s["not_watchable"] += len(p.get("not_watchable", ()))
        for a in p["drift"]:
            s["drift_by_kind"][a["kind"]] = s["drift_by_kind"].get(a["kind"], 0) + 1
        s["quality"] += len(p["quality"])
        s["retrain"] += len(p["retrain"])
        for r in p["retrain"]:
            s["retrain_rules"][r["rule"]] = s["retrain_rules"].get(r["rule"], 0) + 1
        for k, v in p["expected"].items():
            if k == "quality":
                s["expected_quality"] += v
            else:
                s["expected"] += v
                s["expected_by_kind"][k] = s["expected_by_kind"].get(k, 0.0) + v
    for s in seeds.values():
        s["poisson_95"] = poisson_upper(s["expected"])
        s["within_budget"] = s["drift"] <= s["poisson_95"]
        s["seconds"] = round(s["seconds"], 1)
    return list(seeds.values())


def fleet_markdown(res: dict[str, Any]) -> str:
    kinds = res["kinds"]
    out = [f"### Fleet: {res['models']} stationary models x {res['events']:,} events, "
           f"{len(res['seeds'])} seeds, `{res['config']}` unchanged", "",
           "| seed | false drift alerts | budget: expected | Poisson 95% bound | within | "
           "false data-quality alerts | false retrain requests | not watchable at the end |",
           "|---|---|---|---|---|---|---|---|"]
    for s in res["seeds"]:
        out.append(f"| {s['seed']} | {s['drift']} | {s['expected']:.2f} | {s['poisson_95']} | "
                   f"{'yes' if s['within_budget'] else 'NO'} | {s['quality']} | {s['retrain']}"
                   + (f" ({', '.join(f'{k} {v}' for k, v in s['retrain_rules'].items())})"
                      if s["retrain_rules"] else "") + f" | {s.get('not_watchable', '-')} |")
    out += ["", "False drift alerts by signal kind (all seeds; expected under the budget):", "",
            "| kind | " + " | ".join(f"seed {s['seed']}" for s in res["seeds"])
            + " | all | expected |", "|---|" + "---|" * (len(res["seeds"]) + 2)]
    for k in kinds:
        counts = [s["drift_by_kind"].get(k, 0) for s in res["seeds"]]
        exp = sum(s["expected_by_kind"].get(k, 0.0) for s in res["seeds"])
        out.append(f"| {k} | " + " | ".join(str(c) for c in counts)
                   + f" | {sum(counts)} | {exp:.2f} |")
    return "\n".join(out) + "\n"


def fleet_plot(res: dict[str, Any], image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    seeds = res["seeds"]
    xs = range(len(seeds))
    bottom = [0] * len(seeds)
    for j, k in enumerate(res["kinds"]):
        vals = [s["drift_by_kind"].get(k, 0) for s in seeds]
        if any(vals):
            ax.bar(xs, vals, bottom=bottom, label=k, color=plt.get_cmap("tab20")(j))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.plot(xs, [s["expected"] for s in seeds], "k_", markersize=30, mew=2,
            label="budget: expected")
    ax.plot(xs, [s["poisson_95"] for s in seeds], "r_", markersize=30, mew=2,
            label="Poisson 95% bound")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"seed {s['seed']}\n{s['retrain']} false retrain" for s in seeds])
    ax.set_ylabel("false drift alerts")
    ax.set_title(f"fleet: {res['models']} stationary models x {res['events']:,} events "
                 "(default config)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=100)
    plt.close(fig)


def run_fleet(args: argparse.Namespace) -> None:
    """False drift alerts, data-quality alerts and retrain requests of stationary fleets."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from stream_monitor.fleet import FEATURES

    if args.mix_replot:
        res = orjson.loads(args.mix_replot.read_bytes())
        fleet_plot(res, args.mix_image)
        print(fleet_markdown(res))
        return
    if args.quick:
        args.mix_models, args.mix_events, args.mix_seeds = 8, 5000, 2
    seeds = [args.mix_first_seed + i for i in range(args.mix_seeds)]
    chunk = max(1, args.mix_chunk)
    tasks = [(seed, tuple(range(a, min(a + chunk, args.mix_models))))
             for seed in seeds for a in range(0, args.mix_models, chunk)]
    total = args.mix_models * args.mix_events * len(seeds)
    print(f"fleet: {len(seeds)} seeds x {args.mix_models} models x {args.mix_events:,} "
          f"events = {total:,} events in {len(tasks)} tasks on {args.mix_workers} processes",
          file=sys.stderr)
    t0 = time.perf_counter()
    parts: list[dict[str, Any]] = []
    done = 0
    with ProcessPoolExecutor(max_workers=max(1, args.mix_workers)) as pool:
        futures = [pool.submit(fleet_task, seed, models, args.mix_events,
                               args.mix_interval, args.mix_config, args.mix_probabilities)
                   for seed, models in tasks]
        for fut in as_completed(futures):
            p = fut.result()
            parts.append(p)
            done += p["events"]
            el = time.perf_counter() - t0
            print(f"[{len(parts)}/{len(tasks)}] seed {p['seed']} models {p['models'][0]}-"
                  f"{p['models'][-1]}: {len(p['drift'])} drift, {len(p['quality'])} "
                  f"data-quality, {len(p['retrain'])} retrain ({p['seconds']} s, "
                  f"{p['events'] / max(p['seconds'], 1e-9):,.0f} events/s); "
                  f"{el:.0f} s elapsed, ~{el / done * (total - done):.0f} s left",
                  file=sys.stderr)
    res: dict[str, Any] = {
        "models": args.mix_models, "events": args.mix_events, "interval": args.mix_interval,
        "config": str(args.mix_config.relative_to(ROOT) if args.mix_config.is_relative_to(
            ROOT) else args.mix_config),
        "kinds": [*FEATURES, "prediction", "performance"] + (
            ["probability", "confidence", "predicted_class", "estimated_error", "estimate_gap"]
            if args.mix_probabilities else []),
        "probabilities": args.mix_probabilities,
        "seeds": fleet_summary(parts), "parts": sorted(parts, key=lambda p: (p["seed"],
                                                                              p["models"][0])),
        "seconds": round(time.perf_counter() - t0, 1), "workers": args.mix_workers,
        "cpus": os.cpu_count()}
    md = fleet_markdown(res)
    written = write_results("fleet", res, md)
    fleet_plot(res, args.mix_image)
    print(md)
    print(f"({res['seconds']} s wall, {total / res['seconds']:,.0f} events/s over "
          f"{args.mix_workers} processes; wrote {written} and {args.mix_image})",
          file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fleet", action="store_true",
                    help="a fleet of stationary models of mixed signal kinds through the default "
                    "config: false alerts and retrain requests against the budget (--mix-*)")
    fleet_arguments(ap.add_argument_group("fleet mode"))
    ap.add_argument("--numeric", action="store_true",
                    help="numeric fleet false alarms and the Gaussian delay rows only")
    ap.add_argument("--fleet-seeds", type=int, default=200,
                    help="--numeric: streams per fleet kind at 1 per 1,000,000")
    ap.add_argument("--fleet-seeds-low", type=int, default=40,
                    help="--numeric: streams per fleet kind at 1 per 10,000")
    ap.add_argument("--fleet-events", type=int, default=20_000,
                    help="--numeric: values per fleet stream")
    ap.add_argument("--delay-seeds", type=int, default=200,
                    help="--numeric: streams per delay row")
    ap.add_argument("--cycle-seeds", type=int, default=10,
                    help="--numeric: streams per undeclared slow cycle row")
    ap.add_argument("--quick", action="store_true", help="few seeds, short streams")
    ap.add_argument("--seeds", type=int, default=10, help="stationary streams per kind")
    ap.add_argument("--events", type=int, default=21_000, help="values per stationary stream")
    ap.add_argument("--shift-seeds", type=int, default=30, help="streams per shift scenario")
    ap.add_argument("--short-seeds", type=int, default=20,
                    help="stationary streams per kind with a short reference for good")
    ap.add_argument("--short-events", type=int, default=10_200,
                    help="values per short-reference stream")
    ap.add_argument("--target-seeds", type=int, default=200,
                    help=f"streams per {TARGET_KIND} target scenario (1 sd, 0.5 sd, variance x2)")
    ap.add_argument("--image", type=Path, default=ROOT / "docs" / "img" / "quality.png")
    ap.add_argument("--replot", type=Path, metavar="JSON",
                    help="only redraw the plot and the table from a results file")
    ap.add_argument("--rates", action="store_true",
                    help="only the binary signals' section (Bernoulli CUSUM): delays over "
                    "--rate-seeds seeds, false alarms on stationary flags")
    ap.add_argument("--rate-seeds", type=int, default=100, help="streams per rate change")
    ap.add_argument("--rate-fa-seeds", type=int, default=25,
                    help="stationary flag streams per row")
    ap.add_argument("--rate-fa-events", type=int, default=20_000,
                    help="events per stationary flag stream")
    ap.add_argument("--categories", action="store_true",
                    help="only the categories section: categorical features, class labels")
    ap.add_argument("--cat-seeds", type=int, default=20, help="streams per stationary kind")
    ap.add_argument("--cat-events", type=int, default=20_200, help="values per stream")
    ap.add_argument("--cat-shift-seeds", type=int, default=200, help="streams per mix change")
    ap.add_argument("--cat-budget", type=float, default=1_000_000.0,
                    help="stationary streams' budget: 1 false alarm per this many values")
    ap.add_argument("--cat-part", choices=("all", "stationary", "shifts"), default="all",
                    help="run only part of the categories section (two processes in parallel)")
    args = ap.parse_args()
    if args.fleet:
        run_fleet(args)
        return
    if args.rates:
        if args.quick:
            args.rate_seeds, args.rate_fa_seeds, args.rate_fa_events = 10, 2, 5000
        r = rates(args.rate_seeds, args.rate_fa_seeds, args.rate_fa_events)
        written = write_results("rates", r)
        print(rates_markdown(r))
        print(f"({r['seconds']} s; wrote {written})", file=sys.stderr)
        return
    if args.numeric:
        numeric_main(args)
        return
    if args.categories:
        if args.quick:
            args.cat_seeds, args.cat_events, args.cat_shift_seeds = 2, 3000, 10
        categories_main(args)
        return
    if args.replot:
        res = orjson.loads(args.replot.read_bytes())
        plot(res, args.image)
        print(markdown(res))
        return
    if args.quick:
        args.seeds, args.events, args.shift_seeds = 2, 6000, 5
        args.short_seeds, args.short_events, args.target_seeds = 2, 3000, 10
    t0 = time.perf_counter()
    budgets = (10_000.0, 1_000_000.0)
    res: dict[str, Any] = {"kinds": list(KINDS), "budgets": list(budgets), "stationary": [],
                           "shifts": [], "seeds": args.seeds, "events": args.events,
                           "shift_seeds": args.shift_seeds, "short": [], "targets": [],
                           "short_seeds": args.short_seeds, "short_events": args.short_events,
                           "target_seeds": args.target_seeds}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for b in budgets:
            for kind in KINDS:
                r = stationary(kind, args.seeds, args.events, b, tmp)
                r["per_events"] = b
                res["stationary"].append(r)
                print(f"stationary {kind:12s} budget 1/{int(b):>9,}: {r['false_alarms']:3d} "
                      f"false alarms in {r['values']:,} values = {r['per_10k']:.3f}/10k",
                      file=sys.stderr)
        for kind in SHIFT_KINDS:
            for change, size, label in SHIFTS:
                if kind == "binary" and change == "spread":
                    continue  # a 0/1 flag's variance is fixed by its rate: no such change
                r = shifted(kind, change, size, args.shift_seeds, 1_000_000.0, tmp)
                r["label"] = label
                res["shifts"].append(r)
                print(f"shift {kind:12s} {label:13s}: detected {r['detected']}/{r['seeds']}, "
                      f"median delay {r['median_delay']}, median loc. error "
                      f"{r['median_loc_error']}", file=sys.stderr)
        for kind in KINDS:
            r = stationary(kind, args.short_seeds, args.short_events, 10_000.0, tmp,
                           reference=SHORT, base=20_000)
            res["short"].append(r)
            print(f"short reference {kind:12s}: {r['false_alarms']:3d} false alarms in "
                  f"{r['values']:,} values = {r['per_10k']:.3f}/10k", file=sys.stderr)
        for change, size, label in SHIFTS:
            r = shifted(TARGET_KIND, change, size, args.target_seeds, 1_000_000.0, tmp,
                        base=90_000)
            r["label"] = label
            res["targets"].append(r)
            print(f"target {label:13s}: detected {r['detected']}/{r['seeds']}, median delay "
                  f"{r['median_delay']}, p90 {r['p90_delay']}", file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    md = markdown(res)
    written = write_results("quality", res, md)
    plot(res, args.image)
    print(md)
    print(f"({res['seconds']} s; wrote {written} and {args.image})", file=sys.stderr)


# =============================================================================================
# Rates (`--rates`): binary signals under the Bernoulli CUSUM (core/bernoulli.py), through the
# core (Monitor.process) with the default windows and budget. Self-contained: the functions
# below use only the imports of this section.

RATE_REFERENCE, RATE_SHORT = 1000, 200
RATE_FLAG_KINDS = ("iid", "markov", "modulated", "latent_ar1")


def rate_config(quality: bool) -> Any:
    """Default windows and budget; the calibrated `cusum` on every signal and fault rate."""
    rule: dict[str, Any] = {"match": "*", "signals": [{"match": "*", "detectors": ["cusum"]}]}
    if quality:
        rule["quality"] = {"indicators": ["missing"], "detectors": ["cusum"]}
    return parse_config({
        "windows": {"reference_size": RATE_REFERENCE, "reference_min_size": RATE_SHORT,
                    "recent_size": 500},
        "false_alarm_budget": {"per_events": 1_000_000},
        "detectors": {"cusum": {"type": "cusum"}},
        "models": [rule],
    })


def rate_flags(kind: str, p: float, n: int, seed: int) -> np.ndarray:
    """``n`` stationary 0/1 flags at marginal rate ``p``: ``iid``; ``markov`` (a two-state
    chain, lag-one correlation 0.8: runs of ones of mean length 5); ``modulated`` (a hidden
    calm/burst regime, bursts 10% of the time with mean length 20, the rate 6x higher in them);
    ``latent_ar1`` (an AR(1) with coefficient 0.95 above its 1 - p quantile)."""
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    if kind == "iid":
        return u < p
    if kind == "markov":
        lam = 0.8
        a, b = p * (1 - lam), p + lam * (1 - p)
        out = np.empty(n, dtype=bool)
        s = bool(rng.random() < p)
        for i in range(n):
            s = u[i] < (b if s else a)
            out[i] = s
        return out
    if kind == "modulated":
        on_len, frac = 20.0, 0.1
        p_on = min(0.9, 6.0 * p)
        p_off = (p - frac * p_on) / (1 - frac)
        leave_on, enter_on = 1 / on_len, (1 / on_len) * frac / (1 - frac)
        sw = rng.random(n)
        out = np.empty(n, dtype=bool)
        on = bool(rng.random() < frac)
        for i in range(n):
            on = (sw[i] >= leave_on) if on else (sw[i] < enter_on)
            out[i] = u[i] < (p_on if on else p_off)
        return out
    if kind == "latent_ar1":
        phi = 0.95
        e = rng.standard_normal(n) * math.sqrt(1 - phi * phi)
        z = np.empty(n)
        prev = rng.standard_normal()
        for i in range(n):
            prev = phi * prev + e[i]
            z[i] = prev
        return z > _normal_quantile(1 - p)
    raise ValueError(kind)


def _normal_quantile(q: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _rate_events(model: str, flags: np.ndarray, how: str, rng_seed: int,
                 err_p: np.ndarray | None = None) -> list[InferenceEvent]:
    """Events of one model: ``how`` = ``feature`` (the flag as a numeric 0/1 feature),
    ``missing`` (feature ``x`` absent when the flag is 1; ``y`` always there) or ``label``
    (a class prediction and an inline label that disagree when the flag is 1)."""
    out = []
    for i, f in enumerate(flags.tolist()):
        pos = Position("rates", 0, i)
        if how == "feature":
            feats: dict[str, Any] = {"x": 1.0 if f else 0.0}
            out.append(InferenceEvent(f"{model}-{i}", model, feats, 0.0, pos,
                                      timestamp=1_767_225_600.0 + i))
        elif how == "missing":
            feats = {"y": 0.5} if f else {"x": 0.5, "y": 0.5}
            out.append(InferenceEvent(f"{model}-{i}", model, feats, 0.0, pos,
                                      timestamp=1_767_225_600.0 + i))
        else:
            out.append(InferenceEvent(f"{model}-{i}", model, {}, "a", pos,
                                      timestamp=1_767_225_600.0 + i, label="b" if f else "a"))
    return out


def _alert_offsets(out: Any, signal: str) -> list[int]:
    recs = [a for a in out.alerts if a.signal == signal]
    recs += [a for a in out.quality_alerts if a.signal == signal]
    return sorted(a.detected_at.offset for a in recs)


_HOW_SIGNAL = {"feature": "feature:x", "missing": "quality:missing:x",
               "label": "performance:error"}


def rate_false_alarms(kind: str, p: float, how: str, seeds: int, n: int,
                      base: int = 300_000) -> dict[str, Any]:
    """False alarms on stationary flags (one model per seed), counted after the first short
    reference, against the budget's expectation. ``feature`` flags are fed straight to the
    signal (core/signals.py ``SignalState``: reference, calibration, detector, rebaseline after
    an alarm, as in the monitor, without rendering alerts); ``missing`` flags go through the
    whole core (value rules, the fault-rate signal, data-quality alerts)."""
    cfg = rate_config(how == "missing")
    alarms, per_seed = 0, []
    for s in range(seeds):
        flags = rate_flags(kind, p, n, base + s)
        if how == "feature":
            mon = Monitor(cfg)
            model = mon.new_model(f"m{s}")
            sig = mon.new_signal(model, "feature:x") if model is not None else None
            assert sig is not None
            c = 0
            for i, f in enumerate(flags.tolist()):
                if sig.update(1.0 if f else 0.0) >= 0:
                    c += 1
                    sig.rebaseline(i + 1)
        else:
            out = Monitor(cfg).process(_rate_events(f"m{s}", flags, how, s), MonitorState())
            c = len(_alert_offsets(out, _HOW_SIGNAL[how]))
        alarms += c
        per_seed.append(c)
    values = seeds * (n - RATE_SHORT)
    return {"kind": kind, "rate": p, "how": how, "seeds": seeds, "values": values,
            "false_alarms": alarms, "expected_at_budget": values / 1e6,
            "streams_with_alarms": sum(1 for c in per_seed if c)}


def rate_delays(how: str, p_before: float, p_after: float, seeds: int, at: int = 2000,
                horizon: int = 1000, base: int = 400_000) -> dict[str, Any]:
    """Delays (events from the change to the first alert, inclusive) of a rate rising from
    ``p_before`` to ``p_after`` at event ``at`` (after the full reference), and the error of
    the estimated change start."""
    cfg = rate_config(how == "missing")
    delays, locs, early, missed = [], [], 0, 0
    for s in range(seeds):
        rng = np.random.default_rng(base + s)
        u = rng.random(at + horizon)
        flags = u < np.where(np.arange(at + horizon) < at, p_before, p_after)
        out = Monitor(cfg).process(_rate_events(f"m{s}", flags, how, s), MonitorState())
        sig = _HOW_SIGNAL[how]
        recs = sorted((a for a in [*out.alerts, *out.quality_alerts] if a.signal == sig),
                      key=lambda a: a.detected_at.offset)
        before = [a for a in recs if a.detected_at.offset < at]
        after = [a for a in recs if a.detected_at.offset >= at]
        early += len(before)
        if not after:
            missed += 1
            continue
        a = after[0]
        delays.append(a.detected_at.offset - at + 1)
        st = a.evidence["change"]["start"]
        if st["offset"] is not None:
            locs.append(abs(st["offset"] - at))
    return {"how": how, "from": p_before, "to": p_after, "seeds": seeds, "detected": len(delays),
            "missed": missed, "alarms_before_change": early,
            "median_delay": statistics.median(delays) if delays else None,
            "p90_delay": (sorted(delays)[int(0.9 * (len(delays) - 1))] if delays else None),
            "median_start_error": statistics.median(locs) if locs else None}


def rates(seeds: int, fa_seeds: int, fa_events: int) -> dict[str, Any]:
    """The `--rates` run: the two delay targets, then false alarms on stationary flags."""
    t0 = time.perf_counter()
    res: dict[str, Any] = {"delays": [], "false_alarms": [], "seeds": seeds,
                           "fa_seeds": fa_seeds, "fa_events": fa_events}
    for how, a, b in (("label", 0.10, 0.40), ("missing", 0.01, 0.30), ("feature", 0.02, 0.10)):
        r = rate_delays(how, a, b, seeds)
        res["delays"].append(r)
        print(f"rate {how:8s} {a:.0%} -> {b:.0%}: detected {r['detected']}/{seeds}, median "
              f"delay {r['median_delay']}, p90 {r['p90_delay']}, median start error "
              f"{r['median_start_error']}, alarms before the change "
              f"{r['alarms_before_change']}", file=sys.stderr)
    # Stationary flags fed as a 0/1 feature; fault flags reach the same detector through the
    # value rules (rows "missing" at 1% check that path).
    rows = [("feature", kind, p) for kind in RATE_FLAG_KINDS for p in (0.005, 0.01, 0.02, 0.05)]
    rows += [("missing", kind, 0.01) for kind in RATE_FLAG_KINDS]
    for how, kind, p in rows:
        # The whole core is slower: fewer streams for the fault-flag rows.
        r = rate_false_alarms(kind, p, how, fa_seeds if how == "feature" else
                              max(2, fa_seeds // 5), fa_events)
        res["false_alarms"].append(r)
        print(f"stationary {how:8s} {kind:10s} {p:.1%}: {r['false_alarms']} false "
              f"alarms in {r['values']:,} values (budget: {r['expected_at_budget']:.2f})",
              file=sys.stderr)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def rates_markdown(res: dict[str, Any]) -> str:
    lines = [f"Delays, {res['seeds']} seeds each (change at event 2,000, after the full "
             "reference; default budget):", "",
             "| signal | change | detected | median delay | p90 | median start error | "
             "alarms before |", "|---|---|---|---|---|---|---|"]
    for r in res["delays"]:
        lines.append(f"| {_HOW_SIGNAL[r['how']]} | {r['from']:.0%} -> {r['to']:.0%} | "
                     f"{r['detected']}/{r['seeds']} | {r['median_delay']} | {r['p90_delay']} | "
                     f"{r['median_start_error']} | {r['alarms_before_change']} |")
    lines += ["", f"False alarms on stationary flags, streams of {res['fa_events']:,} events "
              f"(counted after the first {RATE_SHORT}):", "",
              "| fed as | flags | rate | streams | false alarms | streams with one | values | "
              "expected at the budget |", "|---|---|---|---|---|---|---|---|"]
    for r in res["false_alarms"]:
        lines.append(f"| {_HOW_SIGNAL[r['how']]} | {r['kind']} | {r['rate']:.1%} | "
                     f"{r['seeds']} | {r['false_alarms']} | {r['streams_with_alarms']} | "
                     f"{r['values']:,} | {r['expected_at_budget']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
