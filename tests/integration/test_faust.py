"""A real Faust app (faust-streaming, the [faust] extra) on the real Kafka serves predictions
from a request topic with a toy model and publishes them through stream_monitor.publish.faust;
the stream-monitor worker reads them, with no dead letter, and alerts on their drift."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_monitor.adapters.kafka_tools import consume, create_topics, produce
from stream_monitor.synth import Drift, StreamSpec, generate

from ..helpers import stop_process
from .conftest import committed, write_test_config
from .faust_serving_app import toy_model

pytestmark = [pytest.mark.integration, pytest.mark.faust]

APP = Path(__file__).with_name("faust_serving_app.py")
# The inputs of a credit model drift at request 1000: +1.5 sd on amount.
SPEC = StreamSpec(models=("credit-risk",), events_per_model=2000, n_features=5, seed=21,
                  drifts=(Drift(1000, "amount", 1.5),))


def test_a_faust_app_publishes_predictions_the_worker_alerts_on(
        kafka_bootstrap, redis_url, unique, tmp_path: Path, start_worker) -> None:
    pytest.importorskip("faust", reason="needs the [faust] extra")
    requests_topic = f"t-{unique.id}-requests"
    asyncio.run(create_topics(kafka_bootstrap, [requests_topic]))
    events = [orjson.loads(raw) for raw in generate(SPEC)]
    requests = [orjson.dumps({"request_id": e["event_id"], "model": e["model_id"],
                              "features": e["features"], "ts": e["timestamp"]})
                for e in events]
    asyncio.run(produce(kafka_bootstrap, requests_topic,
                        ((e["model_id"].encode(), r) for e, r in zip(events, requests,
                                                                     strict=True))))

    worker = start_worker(write_test_config(tmp_path), unique)
    env = unique.env(kafka_bootstrap, redis_url, SM_TEST_FAUST_APP_ID=f"faust-{unique.id}",
                     SM_TEST_REQUESTS_TOPIC=requests_topic,
                     SM_TEST_FAUST_DATADIR=str(tmp_path / "faust-data"), PYTHONUNBUFFERED="1")
    log = tmp_path / "faust.log"
    with log.open("wb") as out:
        app = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=out,
                               stderr=subprocess.STDOUT)
    def faust_tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])

    try:
        # The worker has committed every prediction the app published: that is all of them.
        deadline = time.monotonic() + 150
        done = -1
        while time.monotonic() < deadline and done < len(events):
            assert app.poll() is None, f"the Faust app exited:\n{faust_tail()}"
            assert worker.proc.poll() is None, f"the worker exited:\n{worker.tail()}"
            done = asyncio.run(committed(kafka_bootstrap, unique.app_id,
                                         unique.topics["inference"]))
            time.sleep(0.5)
        assert done >= len(events), (f"the worker committed {done} of {len(events)}:\n"
                                     f"{faust_tail()}\n{worker.tail()}")
    finally:
        code = stop_process(app)
    assert code == 0, f"the Faust app stopped with {code}:\n{faust_tail()}"

    published = asyncio.run(consume(kafka_bootstrap, [unique.topics["inference"]],
                                    until=lambda m: len(m) >= len(events)))
    assert len(published) == len(events)
    by_id = {e["event_id"]: e for e in events}
    for m in published:
        body = orjson.loads(m.value)
        src = by_id[body["event_id"]]
        assert body == {"event_id": src["event_id"], "model_id": "credit-risk",
                        "features": src["features"], "prediction": toy_model(src["features"]),
                        "timestamp": src["timestamp"]}
        assert m.key == b"credit-risk"
        assert m.headers == (("content-type", b"application/json"),
                             ("schema", b"inference-event/v1"))

    def has_alerts(msgs: list[Any]) -> bool:
        signals = {orjson.loads(x.value).get("signal") for x in msgs}
        return {"feature:amount", "prediction"} <= signals

    outputs = asyncio.run(consume(kafka_bootstrap,
                                  [unique.topics["alerts"], unique.topics["dead_letter"]],
                                  until=has_alerts, timeout=60, idle=10))
    dead = [orjson.loads(m.value) for m in outputs if m.topic == unique.topics["dead_letter"]]
    assert dead == [], [d["reason"] for d in dead]
    alerts = [orjson.loads(m.value) for m in outputs if m.topic == unique.topics["alerts"]]
    by_signal = {a["signal"]: a for a in alerts if a.get("type") == "drift_alert"}
    assert {"feature:amount", "prediction"} <= set(by_signal), worker.tail()
    for signal in ("feature:amount", "prediction"):
        at = by_signal[signal]["detected_at"]["offset"]
        assert 1000 <= at < 1300, (signal, at)
