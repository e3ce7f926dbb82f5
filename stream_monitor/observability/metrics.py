"""Prometheus metrics of the worker and the notifier, each in one container built from an
injected ``CollectorRegistry`` (tests pass a fresh one; production the default one).

Names follow the Prometheus conventions: a ``stream_monitor_`` namespace, base units in the
name (``_seconds``), ``_total`` for counters, snake_case labels with bounded values (model and
signal ids come from the monitoring config; reasons and outcomes are fixed sets).

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = WorkerMetrics(reg)
>>> m.observe_batch({"credit-risk": 3}, {"undecodable": 1}, 0.02)
>>> reg.get_sample_value("stream_monitor_events_total", {"model": "credit-risk"})
3.0
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, Info
from prometheus_client import Counter as PromCounter

from ..contracts.output_records import (
    DeadLetterRecord,
    DriftAlert,
    IncidentRecord,
    RetrainRequest,
)
from ..contracts.readings import ModelReading
from ..contracts.records import parse_time

__all__ = ["BatchCounts", "NotifierMetrics", "WorkerMetrics", "batch_counts", "topic_partition"]

NAMESPACE = "stream_monitor"
# The `model` label of every model past SM_METRICS_MAX_MODELS.
OTHER_MODEL = "__other__"

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
LABEL_DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0,
                       3 * 86400.0, 7 * 86400.0)
LABEL_OUTCOMES = ("predictions", "labels", "joined", "labels_before_prediction",
                  "unmatched_labels", "expired_predictions")
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def topic_partition(tp: Any) -> tuple[str, int]:
    """(topic, partition) from a tuple, a Faust/aiokafka ``TP``/``TopicPartition`` or a Position."""
    if isinstance(tp, tuple) and len(tp) >= 2 and not hasattr(tp, "topic"):
        return str(tp[0]), int(tp[1])
    return str(tp.topic), int(tp.partition)


def _event_time(alert: Mapping[str, Any]) -> float | None:
    at = alert.get("detected_at") or alert.get("triggered_by") or {}
    return parse_time(at.get("event_time")) if isinstance(at, Mapping) else None


class WorkerMetrics:
    """Everything the worker reports. Each method is one hook the worker calls; see
    ``docs/notify.md`` ("Wiring the worker") for where."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 clock: Any = time.time, max_models: int = 1000,
                 max_signal_series: int = 5000, signal_gauges: bool = True,
                 signals: Sequence[str] = ("*",)) -> None:
        """``signal_gauges`` off: no per-signal gauges (window sizes, means). ``signals``: globs
        of the signal names that get their own ``signal`` label; the others are counted as
        ``other`` and get no gauges (the monitoring config's ``metrics`` section)."""
        from prometheus_client import REGISTRY

        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        self.clock = clock
        self.signal_gauges = signal_gauges
        self.signal_globs = tuple(signals)
        self._signal_label: dict[str, str | None] = {}
        # Label cardinality is bounded: every labelled series costs memory here and in
        # Prometheus, and a worker may see 100,000 model ids. The first `max_models` models
        # get their own `model` label, the rest share OTHER_MODEL; per-signal gauges exist for
        # the first `max_signal_series` (model, signal) pairs of those models only.
        self.max_models = max_models
        self.max_signal_series = max_signal_series
        self._models: set[str] = set()
        self._signal_series: set[tuple[str, str]] = set()
        ns = NAMESPACE
        self.label_overflows = PromCounter(
            "metrics_label_overflows", "Observations folded into model=\"__other__\" (kind "
            "`model`) or left out of the per-signal gauges (kind `signal`) because the label "
            "limits (SM_METRICS_MAX_MODELS, SM_METRICS_MAX_SIGNAL_SERIES) were reached.",
            ["kind"], namespace=ns, registry=reg)
        self.events = PromCounter("events", "Inference events read, by model (dead letters not "
                                  "included).", ["model"], namespace=ns, registry=reg)
        self.dead_letters = PromCounter("dead_letters", "Events sent to the dead-letter topic, by "
                                        "reason code.", ["reason"], namespace=ns, registry=reg)
        self.batch_duration = Histogram("batch_duration_seconds", "Time to process one batch: "
                                        "decode, state load, detectors, state save, publish.",
                                        namespace=ns, registry=reg, buckets=BATCH_BUCKETS)
        self.batch_events = Histogram("batch_events", "Events per batch.", namespace=ns,
                                      registry=reg, buckets=BATCH_SIZE_BUCKETS)
        self.alert_latency = Histogram(
            "event_to_alert_latency_seconds", "From the event time of the event a detector fired "
            "on to the alert's publication.", namespace=ns, registry=reg, buckets=LATENCY_BUCKETS)
        self.detections = PromCounter("drift_detections", "Drift alerts, by model, signal and "
                                      "detector.", ["model", "signal", "detector"], namespace=ns,
                                      registry=reg)
        self.retrain_requests = PromCounter("retrain_requests", "Retrain requests, by model.",
                                            ["model"], namespace=ns, registry=reg)
        self.incidents = PromCounter("incidents", "Incident records (docs/incidents.md), by model "
                                     "and status: opened, updated, resolved.",
                                     ["model", "status"], namespace=ns, registry=reg)
        self.lag = Gauge("consumer_lag_records", "Records on the input partition not yet "
                         "processed: high watermark minus the next offset to process.",
                         ["topic", "partition"], namespace=ns, registry=reg)
        self.assigned = Gauge("assigned_partitions", "Input partitions assigned to this worker.",
                              namespace=ns, registry=reg)
        self.window_size = Gauge("signal_window_values", "Values in a signal's window: `reference` "
                                 "(collected so far, or complete) and `recent`.",
                                 ["model", "signal", "window"], namespace=ns, registry=reg)
        self.signal_mean = Gauge("signal_mean", "Mean of a signal's `reference` window and of its "
                                 "`current` (recent) window, in the signal's units.",
                                 ["model", "signal", "window"], namespace=ns, registry=reg)
        self.signal_detecting = Gauge("signal_detecting", "1 when the signal's detectors run, 0 "
                                      "while its reference is being collected.",
                                      ["model", "signal"], namespace=ns, registry=reg)
        self.reference_needed = Gauge("signal_reference_needed_values", "Values a signal's "
                                      "reference needs before its detectors run (compare "
                                      "signal_window_values{window=\"reference\"}).",
                                      ["model", "signal"], namespace=ns, registry=reg)
        self.watchable = Gauge("signal_watchable", "1 when a signal's reference supports its "
                               "false-alarm budget (a 2 sd shift caught within its horizon), 0 "
                               "when it is not watchable yet (docs/detection.md "
                               "\"What can be watched\"); absent before its first assessment.",
                               ["model", "signal"], namespace=ns, registry=reg)
        self.effective_sample = Gauge("signal_effective_sample_size", "Effective sample size "
                                      "(values / long-run variance ratio) of the reference the "
                                      "signal was last assessed on.",
                                      ["model", "signal"], namespace=ns, registry=reg)
        self.last_event = Gauge("model_last_event_timestamp_seconds", "Wall-clock time the last "
                                "event of a model was processed.", ["model"], namespace=ns,
                                registry=reg)
        self.redis_rtt = Histogram("redis_round_trip_seconds", "Round-trip time of Redis state "
                                   "writes and loads.", namespace=ns, registry=reg,
                                   buckets=REDIS_BUCKETS)
        self.state_save_failures = PromCounter("state_save_failures", "State saves that failed "
                                               "(the batch is retried).", namespace=ns,
                                               registry=reg)
        self.publish_failures = PromCounter("publish_failures", "Output publishes that failed "
                                            "(retried).", namespace=ns, registry=reg)
        self.internal_errors = PromCounter(
            "worker_internal_errors", "Exceptions in the worker loop, by stage: `batch` (before "
            "the commit: the batch is read again), `report` (metrics or logs after the commit).",
            ["stage"], namespace=ns, registry=reg)
        self.sampled_out = PromCounter(
            "sampled_out", "Records left out by a model's sample_rate, by model and kind "
            "(`inference` or `label`).", ["model", "kind"], namespace=ns, registry=reg)
        self.labels = PromCounter("labels", "Label records read from the labels topic, by model "
                                  "(dead letters not included).", ["model"], namespace=ns,
                                  registry=reg)
        self.label_pairs = PromCounter("label_pairs", "Joined (prediction, label) pairs fed to "
                                       "the model's performance:error signal.", ["model"],
                                       namespace=ns, registry=reg)
        self.label_delay = Histogram("label_delay_seconds", "Label time minus prediction time of "
                                     "the joined pairs (0 when the label came first).", ["model"],
                                     namespace=ns, registry=reg, buckets=LABEL_DELAY_BUCKETS)
        self.label_coverage = Gauge("label_coverage_ratio", "Joined pairs / predictions seen, "
                                    "all time (the label join's totals in Redis).", ["model"],
                                    namespace=ns, registry=reg)
        self.label_join = Gauge("label_join_records", "The label join's all-time totals in Redis: "
                                "predictions, labels, joined, labels_before_prediction, "
                                "unmatched_labels, expired_predictions.", ["model", "outcome"],
                                namespace=ns, registry=reg)
        self.performance = Gauge(
            "model_performance", "Windowed performance metrics over the model's last labelled "
            "events (docs/metrics.md): accuracy, precision_macro, recall_macro, f1_macro, auc, "
            "brier, ece (classifiers), rmse, mae, mape (regressors). Models past "
            "SM_METRICS_MAX_MODELS get none.", ["model", "metric"], namespace=ns, registry=reg)
        self.class_performance = Gauge(
            "model_class_performance", "Per-class precision, recall and f1 over the model's "
            "last labelled events, for the classes with the most labels (the model rule's "
            "performance.max_classes); each (model, class) counts against "
            "SM_METRICS_MAX_SIGNAL_SERIES.", ["model", "class", "metric"], namespace=ns,
            registry=reg)
        self.info = Info("build", "stream-monitor version.", namespace=ns, registry=reg)
        from .. import __version__

        self.info.info({"version": __version__, "component": "worker"})
        self._processed: dict[tuple[str, int], int] = {}
        self._lag_keys: set[tuple[str, int]] = set()
        # Children looked up once: with many models a batch counts thousands of overflows.
        self._model_overflows = self.label_overflows.labels("model")
        self._signal_overflows = self.label_overflows.labels("signal")
        # Overflows counted but not yet added to those counters: a batch of 100,000 models
        # asks about each of its signals (`wants_signal`), and a counter's `inc` (a lock, a
        # child) cost more than the question. Added at the end of each observation.
        self._pending_model_overflows = 0
        self._pending_signal_overflows = 0

    # -- per batch -----------------------------------------------------------------------
    def _m(self, model: str) -> str:
        """The `model` label of a model id: itself while under the limit, else OTHER_MODEL."""
        if model in self._models:
            return model
        if len(self._models) < self.max_models:
            self._models.add(model)
            return model
        self._pending_model_overflows += 1
        return OTHER_MODEL

    def _series(self, model: str, signal: str) -> bool:
        """Whether a (model, signal) pair has per-signal gauges."""
        key = (model, signal)
        if key in self._signal_series:
            return True
        if len(self._signal_series) < self.max_signal_series and self._m(model) == model:
            self._signal_series.add(key)
            return True
        self._pending_signal_overflows += 1
        return False

    def _count_overflows(self) -> None:
        """Add the overflows counted since the last call to ``metrics_label_overflows``."""
        if self._pending_model_overflows:
            self._model_overflows.inc(self._pending_model_overflows)
            self._pending_model_overflows = 0
        if self._pending_signal_overflows:
            self._signal_overflows.inc(self._pending_signal_overflows)
            self._pending_signal_overflows = 0

    def observe_batch(self, events_by_model: Mapping[str, int],
                      dead_letters_by_reason: Mapping[str, int], seconds: float, *,
                      alerts: Sequence[DriftAlert | Mapping[str, Any]] = (),
                      retrain_requests: Sequence[RetrainRequest | Mapping[str, Any]] = (),
                      incidents: Sequence[IncidentRecord] = (),
                      positions: Mapping[Any, int] | None = None,
                      now: float | None = None) -> None:
        """One batch is done (state saved, outputs confirmed). ``positions`` is the last offset
        processed per (topic, partition), for the lag."""
        now = self.clock() if now is None else now
        total = 0
        per_label: dict[str, int] = {}  # models over the label limit share one label
        for model, n in events_by_model.items():
            if n:
                label = self._m(model)
                per_label[label] = per_label.get(label, 0) + n
        for label, n in per_label.items():
            self.events.labels(label).inc(n)
            self.last_event.labels(label).set(now)
            total += n
        for reason, n in dead_letters_by_reason.items():
            if n:
                self.dead_letters.labels(reason).inc(n)
                total += n
        self.batch_duration.observe(max(0.0, seconds))
        self.batch_events.observe(total)
        for a in alerts:
            self.observe_alert(a, now=now)
        for r in retrain_requests:
            mid = r.model_id if isinstance(r, RetrainRequest) else r.get("model_id")
            self.retrain_requests.labels(self._m(str(mid))).inc()
        for i in incidents:
            self.incidents.labels(self._m(i.model_id), i.status).inc()
        for tp, offset in (positions or {}).items():
            self.processed(tp, offset)
        self._count_overflows()

    def observe_labels(self, labels_by_model: Mapping[str, int],
                       pair_delays: Mapping[str, Sequence[float]],
                       label_stats: Mapping[str, Any]) -> None:
        """A batch's delayed labels: records read, pairs fed (with their delays), and the join's
        totals (:class:`~stream_monitor.core.label_join.LabelStats` per model)."""
        for model, n in labels_by_model.items():
            if n:
                self.labels.labels(self._m(model)).inc(n)
        for model, delays in pair_delays.items():
            self.label_pairs.labels(self._m(model)).inc(len(delays))
            h = self.label_delay.labels(self._m(model))
            for d in delays:
                h.observe(d)
        for model, st in label_stats.items():
            for outcome in LABEL_OUTCOMES:
                self.label_join.labels(self._m(model), outcome).set(getattr(st, outcome))
            if st.coverage is not None:
                self.label_coverage.labels(self._m(model)).set(st.coverage)
        self._count_overflows()

    def observe_alert(self, alert: DriftAlert | Mapping[str, Any], *,
                      now: float | None = None) -> None:
        """A drift alert was published (the worker's typed record, or one read back from the
        topic): count it, and observe its event-to-alert latency."""
        if isinstance(alert, DriftAlert):
            detector: object = alert.detector.name
            model_id: object = alert.model_id
            signal_name: object = alert.signal
            t = parse_time(alert.detected_at.event_time)
        else:
            det = alert.get("detector")
            detector = det.get("name") if isinstance(det, Mapping) else det
            model_id, signal_name = alert.get("model_id"), alert.get("signal")
            t = _event_time(alert)
        model = self._m(str(model_id))
        signal = ((self.signal_label(str(signal_name)) or "other")
                  if model != OTHER_MODEL else OTHER_MODEL)
        self.detections.labels(model, signal, str(detector)).inc()
        self._count_overflows()
        now = self.clock() if now is None else now
        if t is not None and now >= t:  # a clock behind the event's time tells us nothing
            self.alert_latency.observe(now - t)

    # -- partitions and lag ----------------------------------------------------------------
    def processed(self, tp: Any, offset: int) -> None:
        """The last offset processed (acked) on an input partition."""
        key = topic_partition(tp)
        if offset > self._processed.get(key, -1):
            self._processed[key] = offset

    def set_lag(self, tp: Any, lag: int) -> None:
        topic, partition = topic_partition(tp)
        self.lag.labels(topic, str(partition)).set(max(0, lag))
        self._lag_keys.add((topic, partition))

    def set_assigned(self, tps: Iterable[Any]) -> None:
        """The current assignment: drops the lag series of partitions no longer assigned."""
        keep = {topic_partition(tp) for tp in tps}
        self.assigned.set(len(keep))
        for key in list(self._processed):
            if key not in keep:
                del self._processed[key]
        for key in list(self._lag_keys):
            if key not in keep:
                self.lag.remove(key[0], str(key[1]))
                self._lag_keys.discard(key)

    def lag_from_highwaters(self, highwaters: Mapping[Any, int],
                            positions: Mapping[Any, int | None] | None = None) -> None:
        """Lag per partition from the brokers' high watermarks (next offset to be written) and
        what this worker processed; ``positions`` (the consumer's next fetch offset) stands in
        for partitions with nothing processed yet."""
        fallback = {topic_partition(k): v for k, v in (positions or {}).items()}
        for tp, hw in highwaters.items():
            key = topic_partition(tp)
            done = self._processed.get(key)
            if done is not None:
                nxt: int | None = done + 1
            else:
                nxt = fallback.get(key)
            if nxt is not None and hw is not None and hw >= 0:
                self.set_lag(key, hw - nxt)

    # -- per signal --------------------------------------------------------------------------
    def signal_label(self, signal: str) -> str | None:
        """The ``signal`` label of a signal, or None when the allow-list leaves it out.

        >>> m = WorkerMetrics(CollectorRegistry(), signals=["prediction", "feature:amount"])
        >>> m.signal_label("feature:amount"), m.signal_label("feature:ssn")
        ('feature:amount', None)
        """
        label = self._signal_label.get(signal, "")
        if label == "":
            import fnmatch

            label = (signal if any(fnmatch.fnmatchcase(signal, g) for g in self.signal_globs)
                     else None)
            if len(self._signal_label) < 100_000:
                self._signal_label[signal] = label
        return label

    def observe_signal(self, model: str, signal: str, *, reference_size: int, recent_size: int,
                       reference_mean: float | None, current_mean: float | None,
                       detecting: bool | None = None, reference_needed: int | None = None,
                       watch: Mapping[str, Any] | None = None) -> None:
        if (not self.signal_gauges or self.signal_label(signal) is None
                or not self._series(model, signal)):
            self._count_overflows()
            return
        self.window_size.labels(model, signal, "reference").set(reference_size)
        self.window_size.labels(model, signal, "recent").set(recent_size)
        if reference_mean is not None and math.isfinite(reference_mean):
            self.signal_mean.labels(model, signal, "reference").set(reference_mean)
        if current_mean is not None and math.isfinite(current_mean):
            self.signal_mean.labels(model, signal, "current").set(current_mean)
        if detecting is not None:
            self.signal_detecting.labels(model, signal).set(1 if detecting else 0)
        if reference_needed is not None:
            self.reference_needed.labels(model, signal).set(reference_needed)
        if watch is not None:
            self.watchable.labels(model, signal).set(1 if watch["watchable"] else 0)
            self.effective_sample.labels(model, signal).set(watch["effective_sample_size"])

    def wants_signal(self, model: str, signal: str) -> bool:
        """Whether this model's signal has gauges (the allow-list, the series cap): the
        pipeline reads only those (``BatchPipeline.reading_filter``). The overflows it finds
        are counted by the next observation (:meth:`observe_readings` follows it)."""
        return (self.signal_gauges and self.signal_label(signal) is not None
                and self._series(model, signal))

    def observe_readings(self, readings: Iterable[ModelReading]) -> None:
        """Window sizes and means of the signals the pipeline read after a batch, and the
        models' windowed performance metrics."""
        for m in readings:
            if m.performance and self._m(m.model_id) == m.model_id:
                for metric, value in m.performance:
                    self.performance.labels(m.model_id, metric).set(value)
                for cls, metric, value in m.classes:
                    if self._series(m.model_id, "class:" + cls):
                        self.class_performance.labels(m.model_id, cls, metric).set(value)
            for r in m.signals:
                self.observe_signal(
                    m.model_id, r.signal, reference_size=r.reference_size,
                    recent_size=r.recent_size, reference_mean=r.reference_mean,
                    current_mean=r.current_mean, detecting=r.detecting,
                    reference_needed=r.reference_needed, watch=r.watch)
        self._count_overflows()

    def observe_models(self, models: Iterable[Any]) -> None:
        """Window sizes and means of every signal of these models (``core.monitor.ModelState``,
        read as the pipeline reads them: :func:`~stream_monitor.pipeline.model_readings`)."""
        from ..pipeline import model_readings  # here: the notifier imports this module

        if not self.signal_gauges:
            return
        self.observe_readings(model_readings(models, self.wants_signal))

    # -- state store and producer ----------------------------------------------------------------
    def redis_round_trip(self, seconds: float) -> None:
        if seconds > 0:
            self.redis_rtt.observe(seconds)

    def state_save_failed(self) -> None:
        self.state_save_failures.inc()

    def publish_failed(self) -> None:
        self.publish_failures.inc()

    def observe_sampled_out(self, counts: Mapping[tuple[str, str], int]) -> None:
        for (model, kind), n in counts.items():
            if n:
                self.sampled_out.labels(self._m(model), kind).inc(n)
        self._count_overflows()

    def internal_error(self, stage: str) -> None:
        self.internal_errors.labels(stage).inc()


@dataclass(slots=True)
class BatchCounts:
    """What :meth:`WorkerMetrics.observe_batch` takes, counted from a batch's input and output."""

    events_by_model: Counter[str] = field(default_factory=Counter)
    dead_letters_by_reason: Counter[str] = field(default_factory=Counter)
    alerts: list[DriftAlert | Mapping[str, Any]] = field(default_factory=list)
    retrain_requests: list[RetrainRequest | Mapping[str, Any]] = field(default_factory=list)
    incidents: list[IncidentRecord] = field(default_factory=list)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


def batch_counts(raws: Iterable[Any], records: Iterable[Any]) -> BatchCounts:
    """Count a batch from its ``RawRecord``s and the pipeline's ``OutputRecord``s.

    Events are attributed to a model by their Kafka key, which the contract says is the
    model_id; dead-lettered events are counted by reason instead.
    """
    out = BatchCounts()
    dead: set[tuple[Any, Any, Any]] = set()
    for r in records:
        rec = r.record if hasattr(r, "record") else r
        if isinstance(rec, DeadLetterRecord):
            out.dead_letters_by_reason[rec.reason_code] += 1
            dead.add((rec.source.topic, rec.source.partition, rec.source.offset))
            continue
        if isinstance(rec, DriftAlert):
            out.alerts.append(rec)
            continue
        if isinstance(rec, RetrainRequest):
            out.retrain_requests.append(rec)
            continue
        if isinstance(rec, IncidentRecord):
            out.incidents.append(rec)
            continue
        if not isinstance(rec, Mapping):
            continue  # another typed record: not counted here
        kind = rec.get("type")
        if kind == "dead_letter":
            out.dead_letters_by_reason[str(rec.get("reason_code"))] += 1
            src = rec.get("source") or {}
            dead.add((src.get("topic"), src.get("partition"), src.get("offset")))
        elif kind == "drift_alert":
            out.alerts.append(rec)
        elif kind == "retrain_request":
            out.retrain_requests.append(rec)
    by_key: Counter[bytes | None] = Counter()
    positions = out.positions
    for raw in raws:
        pos = raw.position
        key = (pos.topic, pos.partition)
        if pos.offset > positions.get(key, -1):
            positions[key] = pos.offset
        if dead and (pos.topic, pos.partition, pos.offset) in dead:
            continue
        by_key[raw.key] += 1
    for k, n in by_key.items():  # each distinct key decoded once, not once an event
        out.events_by_model[k.decode("utf-8", "replace") if k else "(no key)"] += n
    return out


class NotifierMetrics:
    """Everything the notifier reports (``stream_monitor_notify_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        reg = registry if registry is not None else REGISTRY
        self.registry = reg
        ns, sub = NAMESPACE, "notify"
        self.records = PromCounter("records", "Records read from the alert and retrain topics, by "
                                   "record type.", ["type"], namespace=ns, subsystem=sub,
                                   registry=reg)
        self.deliveries = PromCounter("deliveries", "Notifications per target and final outcome "
                                      "(delivered, failed, rejected, skipped).",
                                      ["target", "outcome"], namespace=ns, subsystem=sub,
                                      registry=reg)
        self.attempts = PromCounter("delivery_attempts", "HTTP attempts per target and result "
                                    "(ok, retryable, rejected, error).", ["target", "result"],
                                    namespace=ns, subsystem=sub, registry=reg)
        self.delivery_duration = Histogram("delivery_duration_seconds", "From the first attempt "
                                           "to the final outcome, retries included.", ["target"],
                                           namespace=ns, subsystem=sub, registry=reg,
                                           buckets=DELIVERY_BUCKETS)
        self.dead_letters = PromCounter("dead_letters", "Records sent to the notifier's "
                                        "dead-letter topic, by target and reason.",
                                        ["target", "reason"],
                                        namespace=ns, subsystem=sub, registry=reg)
        self.rate_limit_wait = PromCounter("rate_limit_wait_seconds", "Time spent waiting for a "
                                           "target's rate limit.", ["target"], namespace=ns,
                                           subsystem=sub, registry=reg)
        self.lag = Gauge("consumer_lag_records", "Records not yet handled, per partition of the "
                         "alert and retrain topics.", ["topic", "partition"], namespace=ns,
                         subsystem=sub, registry=reg)
        self.info = Info("build", "stream-monitor version.", namespace=ns, subsystem=sub,
                         registry=reg)
        from .. import __version__

        self.info.info({"version": __version__, "component": "notifier"})

    # hooks used by notify.delivery.Forwarder
    def attempt(self, target: str, result: str) -> None:
        self.attempts.labels(target, result).inc()

    def rate_limited(self, target: str, seconds: float) -> None:
        self.rate_limit_wait.labels(target).inc(seconds)

    def delivery(self, target: str, outcome: str, seconds: float) -> None:
        self.deliveries.labels(target, outcome).inc()
        if outcome != "skipped":
            self.delivery_duration.labels(target).observe(seconds)

    def dead_lettered(self, target: str, reason: str) -> None:
        self.dead_letters.labels(target, reason).inc()

    def set_lag(self, tp: Any, lag: int) -> None:
        topic, partition = topic_partition(tp)
        self.lag.labels(topic, str(partition)).set(max(0, lag))
