"""Client CPU of saving many small models' state to Redis: the grouped save (one script call per
group of models, values framed in one argument; state/redis.py) against the save of 2026-11
(one script call per model, every key and value an argument; kept as the reference in
tests/integration/test_state_save.py), on the same deltas, interleaved, in one run.

    python benchmarks/state_save.py [--models 5000] [--signals 3] [--rounds 5]

Each round saves every model once with each method (fresh key prefixes, so both write the same
keys and values); the figure is the process CPU time of the save call per model (redis-py's
encoding, the pipeline, the reply parsing), and the wall time per model. Each round then loads
every model back with the grouped load (one script call per group of models, one framed reply)
and with the load of 2026-12-07 (an ``MGET`` of the metas, then one of every window and
version and an ``HGETALL`` per outbox; ``RedisStore._load_separately``), interleaved, timed the
same way. Redis comes from REDIS_URL. Results: ``benchmarks/results/state-save-<date>-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_monitor.state.base import ModelDelta, SignalDelta  # noqa: E402
from stream_monitor.state.redis import RedisStore  # noqa: E402
from tests.integration.test_state_save import _ONE_MODEL_SAVE, _one_model_save  # noqa: E402


def _deltas(n: int, signals: int, revision: int) -> list[ModelDelta]:
    names = [f"feature:f{j}" for j in range(signals - 1)] + ["prediction"]
    meta = {"signals": names, "watermarks": {"t:0": 5}, "retrain": {"first_seen": None}}
    smeta = {"kind": "numeric", "ref_mean": 0.5, "ref_std": 1.0,
             "detectors": [{"__type__": "adwin", "state": [1.5, 2, 3]},
                           {"__type__": "page_hinkley", "state": [0.1, 0.2]}]}
    return [ModelDelta(f"m-{i:06d}", meta, [SignalDelta(s, smeta, [0.5, 1.5], None)
                                             for s in names], revision, {})
            for i in range(n)]


async def _per_model(store: RedisStore, deltas: list[ModelDelta]) -> None:
    """The 2026-11 save: one EVALSHA per model, pipelined in one round trip."""
    sha = await store.client.script_load(_ONE_MODEL_SAVE)
    pipe = store.client.pipeline(transaction=False)
    for d in deltas:
        keys, args = _one_model_save(store, d)
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
    replies = await pipe.execute()
    assert all(int(r) == 1 for r in replies)


async def _clean(store: RedisStore) -> None:
    keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*", count=10_000)]
    for i in range(0, len(keys), 10_000):
        await store.client.delete(*keys[i:i + 10_000])


async def amain(args: argparse.Namespace) -> int:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    run = uuid.uuid4().hex[:8]
    old = RedisStore(url, prefix=f"bench-save-{run}-old")
    new = RedisStore(url, prefix=f"bench-save-{run}-new")
    await new.scripts.ensure()
    rows: dict[str, list[tuple[float, float]]] = {"per_model": [], "grouped": [],
                                                  "load_two_rounds": [], "load_grouped": []}
    try:
        for rnd in range(args.rounds):
            deltas = _deltas(args.models, args.signals, rnd)
            for name, store, save in (("per_model", old, _per_model), ("grouped", new, None)):
                c0, t0 = time.process_time(), time.perf_counter()
                if save is None:
                    await store.save(deltas)
                else:
                    await save(store, deltas)
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                rows[name].append((1e6 * cpu / args.models, 1e6 * wall / args.models))
            ids = [d.unit_id for d in deltas]
            for name, load in (("load_two_rounds", new._load_separately),
                               ("load_grouped", new.load)):
                c0, t0 = time.process_time(), time.perf_counter()
                loaded = await load(ids)
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                assert len(loaded) == len(ids)
                rows[name].append((1e6 * cpu / args.models, 1e6 * wall / args.models))
    finally:
        for st in (old, new):
            await _clean(st)
            await st.close()
    res: dict[str, Any] = {"models": args.models, "signals": args.signals, "rounds": args.rounds}
    for name, vals in rows.items():
        cpu = statistics.median(v[0] for v in vals)
        wall = statistics.median(v[1] for v in vals)
        res[name] = {"client_cpu_us_per_model_median": round(cpu, 1),
                     "wall_us_per_model_median": round(wall, 1),
                     "runs": [[round(a, 1), round(b, 1)] for a, b in vals]}
    g, p = res["grouped"], res["per_model"]
    res["grouped/per_model_cpu"] = round(g["client_cpu_us_per_model_median"]
                                         / p["client_cpu_us_per_model_median"], 3)
    lg, lt = res["load_grouped"], res["load_two_rounds"]
    res["load_grouped/load_two_rounds_cpu"] = round(lg["client_cpu_us_per_model_median"]
                                                    / lt["client_cpu_us_per_model_median"], 3)
    print(f"{args.models:,} models x {args.signals} signals, {args.rounds} rounds (median):")
    for name in ("per_model", "grouped", "load_two_rounds", "load_grouped"):
        r = res[name]
        print(f"  {name:15s} client CPU {r['client_cpu_us_per_model_median']:6.1f} us/model, "
              f"wall {r['wall_us_per_model_median']:6.1f} us/model")
    print(f"  grouped / per_model save (client CPU): {res['grouped/per_model_cpu']:.2f}")
    print(f"  grouped / two-round load (client CPU): "
          f"{res['load_grouped/load_two_rounds_cpu']:.2f}")
    now = dt.datetime.now().astimezone()
    path = ROOT / "benchmarks" / "results" / f"state-save-{now.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps({"date": now.isoformat(timespec="seconds"),
                                "loadavg_at_end": list(os.getloadavg()), **res}, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=5000)
    ap.add_argument("--signals", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    sys.exit(asyncio.run(amain(ap.parse_args())))


if __name__ == "__main__":
    main()
