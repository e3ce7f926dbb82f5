"""After a committed batch (step 6 of the batch guarantee, adapters/worker.py): its metrics and
log lines. Best effort: a failure here is logged and counted, never raised (the batch is safe).

It reads what the batch returned (the raw records, the pipeline's ``BatchOutput``) and the typed
readings the pipeline gives of the models the batch changed (``BatchPipeline.readings``), never
the pipeline's state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

from ..contracts.output_records import DeadLetterRecord, DriftAlert
from ..contracts.readings import ModelReading, ReadingFilter
from ..contracts.records import Position, RawRecord
from ..pipeline import BatchOutput
from .logging import log_context
from .metrics import WorkerMetrics, batch_counts

__all__ = ["BatchReporter", "where"]

log = logging.getLogger("stream_monitor.worker")


def where(p: Position) -> str:
    return f"topic={p.topic} partition={p.partition} offset={p.offset}"


# The pipeline's readings of the state units a batch changed (BatchPipeline.readings).
Readings = Callable[[Sequence[str], ReadingFilter], list[ModelReading]]


class BatchReporter:
    def __init__(self, metrics: WorkerMetrics | None, label_topic: str,
                 readings: Readings | None = None) -> None:
        self.metrics = metrics
        self.label_topic = label_topic
        self.readings = readings

    def report(self, raws: Sequence[RawRecord], out: BatchOutput, seconds: float) -> None:
        """Metrics and logs of a committed batch (never raises)."""
        try:
            self._report(raws, out, seconds)
        except Exception:
            log.exception("metrics or logging failed after a committed batch (ignored: the "
                          "batch is safe)")
            if self.metrics is not None:
                with contextlib.suppress(Exception):
                    self.metrics.internal_error("report")

    def _report(self, raws: Sequence[RawRecord], out: BatchOutput, seconds: float) -> None:
        if self.metrics is not None:
            self._observe(self.metrics, raws, out, seconds)
        for r in out.records:
            rec = r.record
            if isinstance(rec, DriftAlert):
                at = rec.detected_at
                with log_context(model=rec.model_id, signal=rec.signal, topic=at.topic,
                                 partition=at.partition, offset=at.offset):
                    log.info("drift alert %s: %s", rec.alert_id, rec.summary)
        if out.alerts or out.retrain_requests or out.dead_letters or out.recovered:
            log.info("batch of %d: %d alerts, %d retrain requests, %d dead letters, %d "
                     "recovered from the outbox, %d redelivered (%s)", len(raws), out.alerts,
                     out.retrain_requests, out.dead_letters, out.recovered, out.redelivered,
                     where(raws[-1].position))

    def _observe(self, metrics: WorkerMetrics, raws: Sequence[RawRecord], out: BatchOutput,
                 seconds: float) -> None:
        label_topic = self.label_topic
        c = batch_counts([r for r in raws if r.position.topic != label_topic], out.records)
        if out.labels or out.label_stats:
            labels_by_model: dict[str, int] = {}
            dead = {(d.source.topic, d.source.partition, d.source.offset) for o in out.records
                    if isinstance(d := o.record, DeadLetterRecord)}
            for r in raws:
                p = r.position
                if p.topic == label_topic and (p.topic, p.partition, p.offset) not in dead:
                    k = r.key.decode("utf-8", "replace") if r.key else "(no key)"
                    labels_by_model[k] = labels_by_model.get(k, 0) + 1
            metrics.observe_labels(labels_by_model, out.pair_delays, out.label_stats)
            for r in raws:
                if r.position.topic == label_topic:
                    tp = (r.position.topic, r.position.partition)
                    c.positions[tp] = max(c.positions.get(tp, -1), r.position.offset)
        if out.quality.sampled_out:
            metrics.observe_sampled_out(out.quality.sampled_out)
        metrics.observe_batch(c.events_by_model, c.dead_letters_by_reason, seconds,
                              alerts=c.alerts, retrain_requests=c.retrain_requests,
                              incidents=c.incidents, positions=c.positions)
        if self.readings is not None and metrics.signal_gauges:
            metrics.observe_readings(self.readings(out.units, metrics.wants_signal))
