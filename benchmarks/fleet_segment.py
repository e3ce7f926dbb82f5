"""False alarms of the categorical detector on the fleet's ``segment`` signal (6 categories,
two rare, cut from an AR(1) latent with coefficient 0.5-0.95; ``stream_monitor.fleet``'s own
generator), fast: the calibration and :class:`Multinomial` run directly, on the schedule the
monitor's signal state uses with the default windows (calibrated on the first 200 values, those
watched, re-based on the first 1,000 at value 1,000, and after an alarm the same again from the
next value).

    python benchmarks/fleet_segment.py --seeds 5 --models 50 --events 20000 --per-events 1e6
"""

from __future__ import annotations

import argparse

from stream_monitor import fleet
from stream_monitor.core.multinomial import Multinomial, calibrate_multinomial

LABELS = list(fleet.CATEGORIES)


def false_alarms(codes: list[float], budget: float, short: int = 200, full: int = 1000) -> int:
    alarms, i, n = 0, 0, len(codes)
    while i + short <= n:
        start = i
        over, _ = calibrate_multinomial(codes[start:start + short], LABELS, budget, {}, 20)
        det = Multinomial(**over)
        i = start + short
        fired = False
        while i < n:
            if i == start + full:
                over, _ = calibrate_multinomial(codes[start:i], LABELS, budget, {}, 20)
                det = Multinomial(**over)
            det.update(codes[i])
            i += 1
            if det.drift_detected:
                alarms += 1
                fired = True
                break
        if not fired:
            break
    return alarms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="fleet seeds 1..N")
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--per-events", type=float, default=1_000_000.0,
                    help="budget: 1 false alarm per this many values")
    a = ap.parse_args()
    budget = 1.0 / a.per_events
    total = values = 0
    for s in range(1, a.seeds + 1):
        for m in range(a.models):
            fm = fleet.fleet_model(s, m)
            codes = [float(c) for c in fleet.feature_columns(fm, a.events)["segment"]]
            total += false_alarms(codes, budget)
            values += a.events
    print(f"segment: {total} false alarms over {values:,} values; "
          f"budget allows {values * budget:.2f}")


if __name__ == "__main__":
    main()
