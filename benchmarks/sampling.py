"""What does a sample rate cost in detection delay? (docs/scaling.md "Sampling a hot model")

    python benchmarks/sampling.py [--seeds 1 2 3 4 5] [--rates 1 0.5 0.1] [--shift 0.5]

For each seed, one synthetic stream of a single hot model (stream_monitor.synth.generate:
``--features`` numeric features and a prediction, ``amount`` shifted by ``--shift`` of its
standard deviations from event ``--change-at`` on, one event every 1/``--events-per-second`` s
of event time) is replayed (stream_monitor.adapters.replay.replay_file, the in-memory stores)
once per sample rate, with ADWIN and Page-Hinkley on every signal (as examples/monitor.yaml
does) and the default windows (reference of 1,000 values). It prints, per rate: the first
alert on ``feature:amount`` after the change, as a delay in events of the whole stream
(sampled-out ones included) and in event time; alerts on it before the change (false alarms);
and the mean and spread over the seeds. Seeded and
deterministic: the same arguments print the same delays. The replay's wall time per rate is
printed too (events of the whole stream per second): a rough figure of what sampling saves,
which depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from stream_monitor.adapters.replay import replay_file
from stream_monitor.config import parse_config
from stream_monitor.synth import Drift, StreamSpec, generate


def model_of(seed: int) -> str:
    """One model id per seed: synth's event ids are `<model>-<index>`, so each seed samples a
    different subset of indices."""
    return f"hot-model-{seed}"


def run(seed: int, rates: list[float], args: argparse.Namespace, tmp: Path,
        seconds: dict[float, float]) -> dict[float, tuple[int | None, float | None, int]]:
    """Per rate: (delay in events, delay in event-time seconds, false alarms). Adds each
    replay's wall time to ``seconds[rate]``."""
    spec = StreamSpec(models=(model_of(seed),), events_per_model=args.events,
                      n_features=args.features,
                      drifts=(Drift(args.change_at, "amount", args.shift),), seed=seed,
                      interval=1.0 / args.events_per_second)
    path = tmp / f"stream-{seed}.jsonl"
    path.write_bytes(b"\n".join(generate(spec)) + b"\n")
    change_time = spec.start_time + args.change_at * spec.interval
    out: dict[float, tuple[int | None, float | None, int]] = {}
    for rate in rates:
        cfg = parse_config({"models": [{
            "match": "hot-model-*", "sample_rate": rate,
            "signals": [{"match": "*", "detectors": ["adwin", "page_hinkley"]}]}]})
        buf = io.BytesIO()
        t0 = time.perf_counter()
        replay_file(cfg, path, buf, batch=5000)
        seconds[rate] = seconds.get(rate, 0.0) + time.perf_counter() - t0
        first: tuple[int, float] | None = None
        false_alarms = 0
        for line in buf.getvalue().splitlines():
            rec = orjson.loads(line)
            if rec["type"] != "drift_alert" or rec["signal"] != "feature:amount":
                continue
            assert rec["sample_rate"] == rate
            i = int(rec["detected_at"]["event_id"].rsplit("-", 1)[1])
            if i < args.change_at:
                false_alarms += 1
            elif first is None:
                t = spec.start_time + i * spec.interval + 0.0
                first = (i - args.change_at, t - change_time)
        out[rate] = (first[0], first[1], false_alarms) if first else (None, None, false_alarms)
    return out


def _fmt(xs: list[float], unit: str, digits: int) -> str:
    if not xs:
        return "-"
    mean = statistics.fmean(xs)
    spread = f" (min {min(xs):.{digits}f}, max {max(xs):.{digits}f})" if len(xs) > 1 else ""
    return f"{mean:.{digits}f}{unit}{spread}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.5, 0.1])
    p.add_argument("--events", type=int, default=40_000, help="events in each stream")
    p.add_argument("--features", type=int, default=10,
                   help="numeric features per event (each a watched signal)")
    p.add_argument("--change-at", type=int, default=20_000,
                   help="first shifted event (after the reference is full at the lowest rate)")
    p.add_argument("--shift", type=float, default=0.5, help="mean shift, in std of the feature")
    p.add_argument("--events-per-second", type=float, default=1000.0,
                   help="the hot model's event rate (event time between events: its inverse)")
    args = p.parse_args()
    if min(args.rates) * args.change_at < 1000 * 1.5:
        p.error("--change-at too early: at the lowest rate the 1,000-value reference is not "
                "full well before the change")
    results: dict[float, list[tuple[int | None, float | None, int]]] = {r: [] for r in args.rates}
    seconds: dict[float, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for seed in args.seeds:
            for rate, res in run(seed, args.rates, args, Path(d), seconds).items():
                results[rate].append(res)
                print(f"seed {seed} rate {rate:g}: delay {res[0]} events, "
                      f"{'-' if res[1] is None else f'{res[1]:.3f}'} s; "
                      f"false alarms {res[2]}", file=sys.stderr)
    print(f"hot model, {args.events:,} events at {args.events_per_second:g}/s, "
          f"{args.features} features + prediction, amount shifted by {args.shift:g} std at "
          f"event {args.change_at:,}; ADWIN + Page-Hinkley on every signal; "
          f"seeds {' '.join(map(str, args.seeds))}")
    print(f"{'rate':>6} | {'detected':>8} | {'delay (events of the stream)':<36} | "
          f"{'delay (event time)':<34} | false alarms | replay events/s")
    for rate in args.rates:
        rs = results[rate]
        ev = [float(r[0]) for r in rs if r[0] is not None]
        ts = [r[1] for r in rs if r[1] is not None]
        fa = sum(r[2] for r in rs)
        speed = args.events * len(rs) / seconds[rate]
        print(f"{rate:>6g} | {len(ev):>3}/{len(rs):<4} | {_fmt(ev, '', 0):<36} | "
              f"{_fmt(ts, ' s', 2):<34} | {fa:>12} | {speed:>15,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
