"""A Faust app that serves a toy model and publishes every prediction through
``stream_monitor.publish.faust``: what ``tests/integration/test_faust.py`` runs (a Faust worker
owns its event loop, so it runs as a process of its own)::

    python tests/integration/faust_serving_app.py

Environment: ``KAFKA_BOOTSTRAP_SERVERS``, ``SM_TEST_FAUST_APP_ID`` (the app id, a fresh consumer
group), ``SM_TEST_REQUESTS_TOPIC`` (prediction requests, JSON ``{"request_id", "model",
"features", "ts"}``), ``SM_TOPIC_INFERENCE`` (where predictions go), ``SM_TEST_FAUST_DATADIR``.
"""

from __future__ import annotations

import math
import os
from typing import Any


def toy_model(features: dict[str, Any]) -> float:
    """A credit score: a logistic function of two standardized features."""
    z = (features["amount"] - 120.0) / 35.0 + 0.5 * (features["utilization"] - 0.4) / 0.12
    return round(1.0 / (1.0 + math.exp(-z)), 6)


def build_app() -> Any:
    import faust

    from stream_monitor.publish.faust import InferenceRecord, send_inference

    class PredictionRequest(faust.Record, include_metadata=False):
        request_id: str
        model: str
        features: dict[str, Any]
        ts: float

    app = faust.App(
        os.environ["SM_TEST_FAUST_APP_ID"],
        broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=os.environ["SM_TEST_FAUST_DATADIR"],
        producer_linger_ms=5,
    )
    requests = app.topic(os.environ["SM_TEST_REQUESTS_TOPIC"], value_type=PredictionRequest,
                         value_serializer="json")
    monitored = app.topic(os.environ["SM_TOPIC_INFERENCE"])

    @app.agent(requests)
    async def serve(stream: Any) -> None:
        async for req in stream:
            score = toy_model(req.features)
            await send_inference(monitored, InferenceRecord(
                event_id=req.request_id, model_id=req.model, features=req.features,
                prediction=score, timestamp=req.ts))

    return app


if __name__ == "__main__":
    from faust.worker import Worker

    Worker(build_app(), loglevel="warning", quiet=True,
           redirect_stdouts=False).execute_from_commandline()
