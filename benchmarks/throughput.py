"""Throughput of the stream-monitor worker against two baselines, on real Kafka and Redis.

    python benchmarks/throughput.py [--events N] [--repeat R] [--detectors cusum]

One run, one broker, one payload: N synthetic inference events (4 models, 10 numeric features
plus a prediction each, key = model id) are produced once to a fresh single-partition topic, and
then read by

1. a raw aiokafka consumer (fresh group, from earliest, ``getmany`` loop doing nothing);
2. a no-op Faust agent (``benchmarks/_noop_faust.py``, configured like ``build_app``), in its
   own process, fresh app id / consumer group each time;
3. the real worker, ``python -m stream_monitor worker --config examples/monitor.yaml``, in its
   own process, fresh app id, Redis key prefix and output topics each time. Its ``credit-*``
   rule puts ADWIN and Page-Hinkley on every feature and on the prediction; with ``--detectors
   cusum``, the same config with the calibrated ``cusum`` (the default detector) there instead.

2 and 3 run ``--repeat`` times, interleaved (noop, worker, noop, worker, ...). What is timed
is described in benchmarks/README.md and in the ``method`` field of the JSON results, which are
written to ``benchmarks/results/throughput-<date>-<time>.json``.

Scale-out mode::

    python benchmarks/throughput.py --scale-out 1,2,3 [--partitions 6] [--models 12] [--events N]

pre-fills one topic with ``--partitions`` partitions (keys = ``--models`` model ids chosen so
that aiokafka's DefaultPartitioner spreads them evenly) and, for each worker count K, starts K
worker processes in ONE fresh consumer group (fresh SM_APP_ID, SM_KEY_PREFIX and output topics,
BROKER_COMMIT_INTERVAL=0.5 for finer commit resolution) and times the group's end-to-end rate
from the sum of its committed offsets over all partitions. It checks that every worker got
partitions (DescribeGroups) and that all N events were processed (committed offsets, and the
models' state in Redis). Results: ``benchmarks/results/scaleout-<date>-<time>.json``.

Kafka and Redis come from KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (as for the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from _throughput.common import Interrupted, err
from _throughput.scaleout_run import scaleout_main
from _throughput.single_run import amain


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write worker counts like 1,2,3") from None


def _has_faust() -> bool:
    import importlib.util

    return importlib.util.find_spec("faust") is not None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--events",
        type=int,
        default=200_000,
        help="events to pre-fill (rounded down to a multiple of 4; default 200000)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="no-op Faust / worker measurements, interleaved; with --scale-out: rounds over "
        "all worker counts (default 1)",
    )
    ap.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        help="seconds between committed-offset polls (default 0.05)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="fail a measurement after this many seconds without commit progress",
    )
    ap.add_argument(
        "--log-dir", help="where the Faust processes' logs go (default: a new temp dir)"
    )
    ap.add_argument(
        "--detectors",
        choices=("adwin+page_hinkley", "cusum"),
        default="adwin+page_hinkley",
        help="the credit-* rule's detectors on every signal: the example config's (default), "
        "or the calibrated cusum (the same config otherwise)",
    )
    ap.add_argument(
        "--keep-topics",
        action="store_true",
        help="keep the benchmark's Kafka topics (deleted by default)",
    )
    g = ap.add_argument_group(
        "scale-out mode",
        "K stream-monitor workers in one consumer group on one multi-partition topic "
        "(see benchmarks/README.md, Scale-out)",
    )
    g.add_argument(
        "--scale-out",
        metavar="K,K,...",
        type=_int_list,
        help="measure these worker counts, e.g. 1,2,3 (instead of the single-partition benchmark)",
    )
    g.add_argument(
        "--partitions", type=int, default=6, help="partitions of the pre-filled topic (default 6)"
    )
    g.add_argument(
        "--models",
        type=int,
        default=12,
        help="model ids (keys), spread evenly over the partitions (default 12)",
    )
    g.add_argument(
        "--commit-interval",
        type=float,
        default=0.5,
        help="BROKER_COMMIT_INTERVAL given to the workers, in s (default 0.5; Faust's is 2.8)",
    )
    args = ap.parse_args()
    if args.repeat < 1 or args.events < 4:
        ap.error("--repeat must be >= 1 and --events >= 4")
    if args.scale_out is not None:
        if not args.scale_out or min(args.scale_out) < 1:
            ap.error("--scale-out takes worker counts >= 1, e.g. 1,2,3")
        if args.partitions < 1 or args.models < args.partitions:
            ap.error("--partitions must be >= 1 and --models >= --partitions")
        if args.events < 10 * args.models:
            ap.error("--events must be at least 10 x --models")
    if not args.scale_out and not _has_faust():
        # The single-process run measures a no-op Faust agent as its reference.
        err.print("throughput.py needs faust-streaming for its no-op Faust agent, which is not "
                  "installed: pip install 'stream-monitor[faust]' (scripts/venv.sh installs it "
                  "with the dev extra)")
        sys.exit(2)
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        code = asyncio.run(scaleout_main(args) if args.scale_out else amain(args))
    except (KeyboardInterrupt, Interrupted, asyncio.CancelledError):
        err.print("[yellow]interrupted; the processes it started are stopped[/yellow]")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
