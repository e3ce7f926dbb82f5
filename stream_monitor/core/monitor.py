"""The pure monitoring core: a batch of decoded events and the state in, outputs out.

No I/O happens here. An adapter (the Kafka worker, the file replay) loads the state of the
models in a batch from a store, calls :meth:`Monitor.process`, persists what the batch changed
(:meth:`ModelState.dirty_signals`), publishes the outputs and only then acknowledges the input.

Per event, :meth:`Monitor.process` feeds each value to its signal (core/signals.py), through the
model's value rules when it has them (core/value_rules.py); a detector that fired becomes an
alert (core/alerts.py), which may open an incident (core/lifecycle.py) and count towards a
retrain request (core/retrain.py). After the event come the retrain policy's pending checks, the
incidents' resolution checks and the post-deploy watch (core/deploy.py). Joined delayed labels
(core/label_join.py) are fed to ``performance:error`` at the end of the batch.

When a detector fires, the signal *rebaselines*: all its detectors are dropped and a new
reference is collected from the values that follow. This keeps one shift from raising an alert
storm against a stale reference.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..contracts.output_records import (
    DeploymentCheck,
    DriftAlert,
    DriftResolved,
    IncidentRecord,
    QualityAlert,
    RequestTrigger,
    RetrainRequest,
)
from ..contracts.records import InferenceEvent, Position, iso_time
from .alerts import drift_alert, joint_alert, quality_alert
from .categories import label_of
from .deploy import start_watch, watch
from .gate import QualityCounters
from .joint import EMBEDDING, JOINT, JointState, project
from .label_join import PERFORMANCE_SIGNAL, JoinedPair, Task, error_value, version_key
from .model_state import MISSING, ModelState, MonitorState, StateBuilder
from .performance import (
    BRIER_SIGNAL,
    MAPE_EPSILON,
    PERCENTAGE_ERROR_SIGNAL,
    SQUARED_ERROR_SIGNAL,
    Labelled,
    brier,
    classes_of,
)
from .privacy import redact_outputs
from .probabilities import (
    CLASS_MIX,
    CONFIDENCE,
    ESTIMATE_GAP,
    ESTIMATED_ERROR,
    PROBABILITY_PREFIX,
    arg_max,
    uniform_of,
)
from .retrain import decide, note_alert, retrain_request, tick
from .signals import PREDICTION, SignalState
from .value_rules import Fired, check_features, close_sample
from .vector import Pinned, feed_ahead

__all__ = ["BatchResult", "Monitor", "Pause", "collecting", "not_watchable"]


class Pause:
    """A point between two parts of a batch where its caller may let other work run (the
    worker's event loop: heartbeats, health endpoints)."""


@dataclass(slots=True)
class BatchResult:
    """What one batch produced: the records to publish (alerts, resolutions, retrain requests,
    data-quality alerts, deployment checks), the state units to save, and its counts."""

    alerts: list[DriftAlert] = field(default_factory=list)
    retrain_requests: list[RetrainRequest] = field(default_factory=list)
    dirty_models: list[ModelState] = field(default_factory=list)
    events: int = 0
    unwatched: int = 0
    values: int = 0
    redelivered: int = 0  # events skipped because their effects were already stored
    quality_alerts: list[QualityAlert] = field(default_factory=list)
    quality: QualityCounters = field(default_factory=QualityCounters)  # rejected values
    resolved: list[DriftResolved] = field(default_factory=list)  # (lifecycle)
    deployment_checks: list[DeploymentCheck] = field(default_factory=list)  # core/deploy.py
    incidents: list[IncidentRecord] = field(default_factory=list)  # core/incidents.py
    # Watches waiting for labels: unit -> the latest event seen, for the timeout check made
    # once the whole batch (its labels included) is in.
    watch_pending: dict[str, InferenceEvent] = field(default_factory=dict)
    pairs: int = 0  # joined (prediction, label) pairs fed to performance signals
    # State units the batch changed, in first-touched order (dirty_models once finished).
    touched: dict[str, ModelState] = field(default_factory=dict)
    # Events refused whole by a per-model limit (event, reason code, reason): dead letters.
    rejected: list[tuple[InferenceEvent, str, str]] = field(default_factory=list)
    pairs_redelivered: int = 0  # pairs already consumed by the stored state: skipped
    # Label delays (seconds) of the pairs fed, per model (for the label metrics).
    pair_delays: dict[str, list[float]] = field(default_factory=dict)


class Monitor(StateBuilder):
    """Turns batches of inference events into drift alerts and retrain requests.

    >>> from stream_monitor.config import parse_config
    >>> from stream_monitor.contracts import InferenceEvent, Position
    >>> cfg = parse_config({"windows": {"reference_size": 50, "recent_size": 50},
    ...     "models": [{"match": "m", "signals": [{"match": "feature:*",
    ...                                             "detectors": ["page_hinkley"]}]}]})
    >>> mon, state = Monitor(cfg), MonitorState()
    >>> events = [InferenceEvent(f"e{i}", "m", {"x": float(i % 5 + (20 if i >= 300 else 0))},
    ...           0.0, Position("t", 0, i)) for i in range(400)]
    >>> out = mon.process(events, state)
    >>> [(a.signal, a.detected_at.offset) for a in out.alerts]
    [('feature:x', 302)]
    >>> mon.process(events[390:], state).redelivered  # already applied: no effect twice
    10
    """

    # (The state units and signals it builds and restores: StateBuilder, core/model_state.py.)

    # Feed quiet models' values per signal as arrays (core/vector.py); False: value by value
    # (the reference the batch path is tested against).
    vectorised: bool = True

    # -- the batch ------------------------------------------------------------------------
    def detect(self, events: Sequence[InferenceEvent], state: MonitorState,
               quality: QualityCounters, pairs: Sequence[JoinedPair], chunk: int,
               ) -> Generator[Pause, None, BatchResult]:
        """:meth:`process` over the batch in parts of ``chunk`` events, with a :class:`Pause`
        between two parts, so that a large batch does not hold up the worker's event loop.
        Same outcome as one call."""
        result = None
        for lo in range(0, max(len(events), 1), chunk):
            if lo:
                yield Pause()
            last = lo + chunk >= len(events)
            result = self.process(events[lo:lo + chunk], state, quality,
                                  pairs if last else (), result=result, finish=last)
        assert result is not None
        return result

    def process(self, events: Sequence[InferenceEvent], state: MonitorState,
                quality: QualityCounters | None = None,
                pairs: Sequence[JoinedPair] = (), *, result: BatchResult | None = None,
                finish: bool = True) -> BatchResult:
        """Run a batch through the detectors. Events of one model are processed in order.

        ``state`` must already hold every model of the batch that the store knows; a model
        not in it starts fresh. The state is updated in place; ``result.dirty_models`` says
        what to persist. Rejected values are counted in ``quality`` (the batch's counters,
        also returned as ``result.quality``). ``pairs`` are joined delayed labels
        (core/label_join.py), fed to each model's ``performance:error`` signal after the events;
        pairs at or below the model's stored cursor are skipped.

        A batch may be fed in parts (an adapter that keeps its event loop responsive): pass
        the part's ``result`` back in with each further part, and ``finish=False`` for all but
        the last, whose call then feeds ``pairs`` and ends the batch (the deployment watch's
        end-of-batch checks). The outcome is the same as one call with all the events.
        """
        if result is None:
            result = BatchResult()
        if quality is not None:
            result.quality = quality
        counters = result.quality
        models = state.models
        unwatched: set[str] = set()
        touched = result.touched
        values = 0
        unit_of = self.unit_of
        max_features = self.config.quality.max_features_per_model
        # Quiet models' values go through their detectors per signal, as arrays, up to their
        # first alarm (core/vector.py); the loop skips them and feeds the rest value by value.
        ahead: dict[str, tuple[int, Pinned]] = {}
        if self.vectorised:
            ahead, values = feed_ahead(self, events, models, max_features)
        for i, ev in enumerate(events):
            mid = ev.model_id
            ver = ev.model_version
            uid = mid if ver is None else unit_of(mid, ver)
            model = models.get(uid)
            if model is None:
                if mid in unwatched:
                    result.unwatched += 1
                    continue
                model = self.new_model(mid, ver)
                if model is None:
                    unwatched.add(mid)
                    result.unwatched += 1
                    continue
                models[uid] = model
            if model.retrain.first_seen is None:
                model.retrain.first_seen = ev.event_time  # the staleness fallback's origin
            pos = ev.position
            tp = (pos.topic, pos.partition)
            if pos.offset <= model.applied.get(tp, -1):
                result.redelivered += 1
                continue
            mq = model.value_rules
            known = mq.features if mq is not None else model.signals
            if len(known) + len(ev.features) > max_features and _over_feature_limit(
                    model, ev.features, max_features):
                result.rejected.append((ev, "too_many_signals", (
                    f"the event would give model {mid!r} more than quality.max_features_per_model "
                    f"= {max_features} distinct features; fix the producer's feature names, or "
                    "raise the limit")))
                continue
            model.applied[tp] = pos.offset
            touched[uid] = model
            model.events += 1
            model.ring_ids.append(ev.event_id)
            model.ring_offsets.append(pos.offset)
            model.dirty = True
            if model.timed:  # signals with a period of event time (core/seasonal.py)
                now = ev.event_time
                for ts in model.timed:
                    ts.t = now
            lim = ahead.get(uid) if ahead else None
            fed_ahead = False
            if lim is not None and i < lim[0]:
                fed_ahead = True
                # Its values were fed ahead (core/vector.py), but those of the signals an open
                # incident or pending retrain evidence reads after each event.
                pinned = lim[1]
                if pinned.features or pinned.prediction is not None:
                    values += self._feed_pinned(model, ev, pinned, result)
                if mq is not None:  # (no fault, no bounds learned: core/vector.py)
                    mq.sample_n += 1
                    if mq.sample_n >= mq.rule.sample_events:
                        close_sample(model, mq)
            elif mq is not None:
                # Value rules: missing, bounds, categories, fault-rate signals. What fired is
                # handled once the event's values are all fed (each is a signal of its own), and
                # before the sample closes (a drifted signal learns no bounds from its old
                # reference).
                fed, fired_rules = check_features(self, model, mq, ev, counters)
                values += fed
                for f in fired_rules:
                    self._on_fired(model, f, ev, result)
                if mq.sample_n >= mq.rule.sample_events:
                    close_sample(model, mq)
            else:
                by_feature = model.by_feature
                for name, value in ev.features.items():
                    sig = by_feature.get(name, MISSING)
                    if sig is MISSING:
                        signal = "feature:" + name
                        sig = model.signals.get(signal) or self.new_signal(model, signal)
                        if len(by_feature) >= 2 * max_features:
                            by_feature.clear()  # a cache: unwatched names must not grow it
                        by_feature[name] = sig
                    if sig is None:
                        continue
                    if sig.table is not None:
                        # A categorical signal (its rule says kind: categorical): a category.
                        label = label_of(value)
                        if label is not None:
                            values += 1
                            fired = sig.update_category(label)
                            if fired >= 0:
                                self._on_drift(model, sig, fired, ev,
                                               result)
                        continue
                    # Inlined _number(): this loop runs once per value and dominates the core.
                    t = type(value)
                    if t is float:
                        if value - value != 0.0:  # NaN or +/-inf: this value only is rejected
                            counters.reject(mid, sig.signal,
                                            "non_finite")
                            continue
                        x = value
                    elif t is int or t is bool:
                        x = float(value)
                    else:
                        continue
                    values += 1
                    fired = sig.update(x)
                    if fired >= 0:
                        self._on_drift(model, sig, fired, ev, result)
            if not fed_ahead:
                sig = model.prediction
                if sig is MISSING:
                    # A class label (string) makes the prediction a categorical signal (also in
                    # place of an empty numeric one, stored by a version that skipped class
                    # labels).
                    is_class = type(ev.prediction) is str
                    sig = model.signals.get(PREDICTION)
                    if sig is None or (is_class and sig.n == 0 and sig.table is None):
                        sig = self.new_signal(model, PREDICTION, categorical=is_class)
                    model.prediction = sig
                if sig is not None:
                    if sig.table is not None:
                        label = label_of(ev.prediction)
                        if label is not None:
                            values += 1
                            fired = sig.update_category(label)
                            if fired >= 0:
                                self._on_drift(model, sig, fired, ev, result)
                        x = None
                    else:
                        x = _number(ev.prediction)
                    if x is not None:
                        values += 1
                        fired = sig.update(x)
                        if fired >= 0:
                            self._on_drift(model, sig, fired, ev, result)
                    elif type(ev.prediction) is float:
                        counters.reject(mid, PREDICTION, "non_finite")
            if ev.probabilities is not None and model.rule.probabilities is not None:
                values += self._probabilities(model, ev, result)
            if model.joint is not None:
                values += self._joint(model, model.joint, ev.features, JOINT, ev, result)
            if ev.embeddings is not None and model.embedding is not None:
                values += self._embedding(model, ev.embeddings, ev, result)
            if ev.label is not None and model.rule.labels is None:
                self._inline_label(model, ev, result)
            rs = model.retrain
            lc = model.lifecycle
            dw = model.deploy
            if (rs.evidence or rs.degraded or (lc is not None and lc.incidents)
                    or (dw is not None and not dw.done)):
                self._after_event(model, ev, result, models)
        result.events += len(events)
        result.values += values
        if not finish:
            return result
        if pairs:
            self._process_pairs(pairs, models, touched, result)
        for uid, ev in result.watch_pending.items():
            model = models[uid]
            if model.deploy is not None and not model.deploy.done:
                self._watch(model, ev, result, models, final=True)
        result.dirty_models = list(touched.values())
        # What leaves the worker (privacy.alert_evidence); the state above kept the full
        # evidence it needs.
        redact_outputs(result, self.config.privacy.alert_evidence)
        return result

    def _feed_pinned(self, model: ModelState, ev: InferenceEvent, pinned: Pinned,
                     result: BatchResult) -> int:
        """The values of an event fed ahead that go to its ``pinned`` signals (those an open
        incident or pending evidence reads after each event: core/vector.py), value by value
        as :meth:`process` feeds them. Returns how many."""
        fed = 0
        feats = ev.features
        fired: list[tuple[str, SignalState, int]] = []
        for name, sig in pinned.features:
            value: Any = feats.get(name)  # an event's feature value: wire JSON, any type
            t = type(value)
            if t is float or t is int or t is bool:  # (core/vector.py: finite)
                fed += 1
                k = sig.update(float(value))
                if k >= 0:
                    fired.append((name, sig, k))
        if len(fired) > 1:  # alerts in the event's order of features, as the loop raises them
            order = list(feats)
            fired.sort(key=lambda f: order.index(f[0]))
        for _, sig, k in fired:
            self._on_drift(model, sig, k, ev, result)
        pred = pinned.prediction
        if pred is not None and type(ev.prediction) in (float, int, bool):
            fed += 1
            k = pred.update(float(ev.prediction))
            if k >= 0:
                self._on_drift(model, pred, k, ev, result)
        return fed

    def _probabilities(self, model: ModelState, ev: InferenceEvent,
                       result: BatchResult) -> int:
        """An event's class probabilities to their signals (core/probabilities.py): each
        class's probability (the first ``max_classes`` classes), the confidence, the arg-max
        class (when the prediction is not a class label), and the estimated error once the
        model's estimate is calibrated. Returns the values fed."""
        pp = model.rule.probabilities
        probs = ev.probabilities
        if pp is None or probs is None:
            return 0
        fed = 0
        fired: list[tuple[SignalState, int]] = []
        if pp.classes:
            by_class = model.by_class
            for cls, p in probs.items():
                sig = by_class.get(cls, MISSING)
                if sig is MISSING:
                    sig = self._class_signal(model, cls, pp.max_classes)
                    if len(by_class) >= 4 * pp.max_classes:
                        by_class.clear()  # a cache: unwatched classes must not grow it
                    by_class[cls] = sig
                if sig is not None:
                    fed += 1
                    k = sig.update(p)
                    if k >= 0:
                        fired.append((sig, k))
        cls, confidence = arg_max(probs)
        if pp.confidence:
            sig = model.signals.get(CONFIDENCE) or self.new_signal(model, CONFIDENCE)
            if sig is not None:
                fed += 1
                k = sig.update(confidence)
                if k >= 0:
                    fired.append((sig, k))
        if pp.class_mix and type(ev.prediction) is not str:
            sig = model.signals.get(CLASS_MIX) or self.new_signal(model, CLASS_MIX,
                                                                  categorical=True)
            if sig is not None and sig.table is not None:
                fed += 1
                k = sig.update_category(cls)
                if k >= 0:
                    fired.append((sig, k))
        est = model.estimate
        if est is not None:
            e = est.estimated_error(confidence)
            if e is not None:
                sig = model.signals.get(ESTIMATED_ERROR) or self.new_signal(model,
                                                                            ESTIMATED_ERROR)
                if sig is not None:
                    fed += 1
                    k = sig.update(e)
                    if k >= 0:
                        fired.append((sig, k))
        for sig, k in fired:
            self._on_drift(model, sig, k, ev, result)
        return fed

    def _embedding(self, model: ModelState, vector: list[float], ev: InferenceEvent,
                   result: BatchResult) -> int:
        """An event's embedding, as its fixed random projections, to the ``embedding`` signal
        (core/joint.py); a vector of another length than the model's first is skipped."""
        es = model.embedding
        assert es is not None  # the caller checks
        if es.dim == 0:
            es.dim = len(vector)
        elif len(vector) != es.dim:
            return 0
        return self._joint(model, es, project(vector, es.max_features), EMBEDDING, ev, result)

    def _joint(self, model: ModelState, js: JointState, features: dict[str, Any], name: str,
               ev: InferenceEvent, result: BatchResult) -> int:
        """An event's numeric features (or embedding projections) together to the ``joint``
        (``embedding``) signal (core/joint.py), once the model's fit has formed. Returns the
        values fed (0 or 1)."""
        x = js.value(features)
        if x is None:
            return 0
        sig = model.signals.get(name) or self.new_signal(model, name)
        if sig is None:
            return 0
        k = sig.update(x)
        if k >= 0:
            self._on_drift(model, sig, k, ev, result)
        return 1

    def _class_signal(self, model: ModelState, cls: str, cap: int) -> SignalState | None:
        """The probability signal of a class first seen by this model's cache: its stored
        signal, a new one while the model has fewer than ``cap`` classes watched, else None."""
        name = PROBABILITY_PREFIX + cls
        sig = model.signals.get(name)
        if sig is not None:
            return sig
        watched = sum(1 for s in model.signals if s.startswith(PROBABILITY_PREFIX))
        return self.new_signal(model, name) if watched < cap else None

    def _estimate_label(self, model: ModelState, confidence: float, error: float,
                        ev: InferenceEvent, result: BatchResult) -> None:
        """A labelled event of a model with a performance estimate: a calibration pair while
        the calibration forms, else its gap score (core/probabilities.py) to ``estimate_gap``.
        A new fit re-bases ``performance:estimated_error`` (its values now mean the new fit)."""
        est = model.estimate
        if est is None or error not in (0.0, 1.0):
            return
        fits = est.calibrations
        gap = est.label(confidence, error, uniform_of(ev.event_id))
        if est.calibrations != fits and fits:
            prior = model.signals.get(ESTIMATED_ERROR)
            if prior is not None:
                prior.rebaseline(model.events)
        if gap is None:
            return
        sig = model.signals.get(ESTIMATE_GAP) or self.new_signal(model, ESTIMATE_GAP)
        if sig is None:
            return
        k = sig.update(gap)
        if k >= 0:
            self._on_drift(model, sig, k, ev, result)

    def _inline_label(self, model: ModelState, ev: InferenceEvent, result: BatchResult) -> None:
        """An event that carries its own true outcome (``label``) feeds ``performance:error``
        at once, with no labels topic: 0/1 errors when the label is a class (bool, string, or
        0/1 against a score), absolute errors when it is any other number. (A model rule with
        ``labels`` takes its labels from the labels topic instead.)"""
        label = ev.label
        classification = (isinstance(label, bool | str)
                          or (type(label) is int and label in (0, 1)))
        task: Task = "classification" if classification else "regression"
        err = error_value(task, ev.prediction, label)
        if err is None:
            result.quality.reject(ev.model_id, PERFORMANCE_SIGNAL, "incomparable")
            return
        contributions = self._metrics_row(model, task, ev.prediction, label, 0.5,
                                          ev.probabilities, None)
        sig = (model.signals.get(PERFORMANCE_SIGNAL)
               or self.new_signal(model, PERFORMANCE_SIGNAL))
        if sig is not None:
            fired = sig.update(err)
            if fired >= 0:
                self._on_drift(model, sig, fired, ev, result)
        self._contributions(model, contributions, ev, result)
        if classification and ev.probabilities is not None and model.estimate is not None:
            self._estimate_label(model, max(ev.probabilities.values()), err, ev, result)

    @staticmethod
    def _metrics_row(model: ModelState, task: str, prediction: Any, label: Any,
                     threshold: float, probabilities: Mapping[str, float] | None,
                     confidence: float | None) -> list[tuple[str, float]]:
        """A labelled event joins the model's metrics window (core/performance.py). Returns
        its per-event contributions the model watches (``performance.watch``), to feed once its
        ``performance:error`` is fed (so that an alert's evidence includes this event)."""
        ms, mp = model.performance, model.rule.performance
        if ms is None or mp is None:
            return []
        values: list[tuple[str, float]] = []
        if task == "regression":
            p, y = float(prediction), float(label)
            ms.add(task, Labelled(prediction=p, label=y))
            if mp.watch:
                values.append((SQUARED_ERROR_SIGNAL, (p - y) ** 2))
                if abs(y) > MAPE_EPSILON:
                    values.append((PERCENTAGE_ERROR_SIGNAL, abs(p - y) / abs(y)))
        else:
            row = classes_of(prediction, label, threshold, probabilities)
            if row is None:
                return []
            if row.confidence is None and confidence is not None:
                row = row._replace(confidence=confidence)
            ms.add(task, row)
            if mp.watch:
                probs = row.probs()
                if probs is not None:
                    values.append((BRIER_SIGNAL, brier(probs, row.true)))
        return [(n, v) for n, v in values if mp.wants(n)]

    def _contributions(self, model: ModelState, values: Sequence[tuple[str, float]],
                       ev: InferenceEvent, result: BatchResult) -> None:
        for name, v in values:
            sig = model.signals.get(name) or self.new_signal(model, name)
            if sig is not None:
                k = sig.update(v)
                if k >= 0:
                    self._on_drift(model, sig, k, ev, result)

    def _after_event(self, model: ModelState, ev: InferenceEvent, result: BatchResult,
                     models: dict[str, ModelState]) -> None:
        rs = model.retrain
        if (rs.evidence or rs.degraded) and rs.watching(model.rule.retrain):
            # Pending persistence checks, or the staleness fallback (core/retrain.py).
            tick(model.rule.retrain, rs, model.signals, ev.event_time, model.events)
            self._decide(model, ev, result, None)
        lc = model.lifecycle
        policy = model.rule.alerts  # set whenever the model has a lifecycle (model_state.py)
        if lc is not None and policy is not None and lc.incidents:
            back = lc.tick(policy, model.signals, ev, model.model_id, model.rule.sample_rate)
            book, ip = model.incidents, model.rule.incidents
            if back and book is not None and ip is not None:
                for z in back:  # (each names the incident it belongs to)
                    z, rec = book.on_resolved(ip, z, model.signals)
                    result.resolved.append(z)
                    if rec is not None:
                        result.incidents.append(rec)
            else:
                result.resolved += back
        dw = model.deploy
        if dw is not None and not dw.done:
            self._watch(model, ev, result, models)

    # -- model versions ---------------------------------------------------------------------
    def start_watch(self, model: ModelState, previous: ModelState | None,
                    previous_version: str | None, started_at: float) -> None:
        """A new version of a model appeared: watch it (core/deploy.py)."""
        start_watch(model, previous, previous_version, started_at)

    def _watch(self, model: ModelState, ev: InferenceEvent, result: BatchResult,
               models: dict[str, ModelState], final: bool = False) -> None:
        dw = model.deploy
        if dw is None:
            return
        check = watch(model, dw, ev, models, result.watch_pending,
                      self.config.windows.reference_size, final)
        if check is not None:
            result.deployment_checks.append(check)


    def _process_pairs(self, pairs: Sequence[JoinedPair], models: dict[str, ModelState],
                       touched: dict[str, ModelState], result: BatchResult) -> None:
        """Feed joined (prediction, label) pairs to the models' performance signals, in log
        order. An alert on one names the record that completed the pair (the label, or the
        prediction when its label came first) and the prediction's event id."""
        for p in pairs:
            mid = p.model_id
            uid = self.unit_of(mid, p.version)
            model = models.get(uid)
            if model is None:
                model = self.new_model(mid, p.version)
                if model is None:
                    continue
                models[uid] = model
            rule = model.rule.labels
            if rule is None:
                continue  # the config no longer takes labels for this model
            vk = version_key(p.version)
            if p.seq <= model.pairs_applied.get(vk, 0):
                result.pairs_redelivered += 1
                continue
            model.pairs_applied[vk] = p.seq
            touched[uid] = model
            model.dirty = True
            err = error_value(rule.task, p.prediction, p.label, rule.threshold)
            if err is None:
                result.quality.reject(mid, PERFORMANCE_SIGNAL, "incomparable")
                continue
            sig = (model.signals.get(PERFORMANCE_SIGNAL)
                   or self.new_signal(model, PERFORMANCE_SIGNAL))
            if sig is None:
                continue
            result.pairs += 1
            result.pair_delays.setdefault(mid, []).append(p.delay)
            ev = InferenceEvent(p.event_id, mid, {}, p.prediction,
                                Position(p.topic, p.partition, p.offset), p.version, p.label_time)
            contributions = self._metrics_row(
                model, rule.task, p.prediction, p.label, rule.threshold,
                None if p.probabilities is None else dict(p.probabilities), p.confidence)
            fired = sig.update(err)
            if fired >= 0:
                self._on_drift(model, sig, fired, ev, result)
            self._contributions(model, contributions, ev, result)
            if (p.confidence is not None and model.estimate is not None
                    and rule.task == "classification"):
                self._estimate_label(model, p.confidence, err, ev, result)
            self._after_event(model, ev, result, models)

    def _on_drift(self, model: ModelState, sig: SignalState, i: int, ev: InferenceEvent,
                  result: BatchResult) -> None:
        alert = drift_alert(self.config, model, sig, i, ev)
        js = (model.joint if sig.signal == JOINT
              else model.embedding if sig.signal == EMBEDDING else None)
        if js is not None:
            alert = joint_alert(alert, js, self.config.windows.evidence_size)
            js.refit()  # the signal rebaselines below: its new reference, a new fit
        if sig.signal == ESTIMATE_GAP and model.estimate is not None:
            model.estimate.relearn()  # the estimate no longer holds: calibrate it again
        lc = model.lifecycle
        policy = model.rule.alerts  # set whenever the model has a lifecycle (model_state.py)
        if (lc is not None and policy is not None
                and not lc.on_drift(policy, alert, sig.n, ev.event_time)):
            sig.rebaseline(model.events)  # folded into the signal's open incident: unpublished
            return
        book, ip = model.incidents, model.rule.incidents
        if book is not None and ip is not None:  # grouped with other signals' (core/incidents.py)
            alert, rec = book.on_alert(ip, alert, ev.event_time, model.signals)
            result.incidents.append(rec)
        result.alerts.append(alert)
        # Evidence against the reference the drift was measured on, so before the rebaseline.
        note_alert(model.rule.retrain, model.retrain, alert, sig.n, ev.event_time, model.events)
        sig.rebaseline(model.events)
        self._decide(model, ev, result, alert)

    def _on_fired(self, model: ModelState, f: Fired, ev: InferenceEvent,
                  result: BatchResult) -> None:
        """What a value rule's detector fired: a drift (as :meth:`_on_drift`), or a change of a
        fault rate, which is published as a data-quality alert and rebaselines its signal."""
        if f.fault is None:
            self._on_drift(model, f.signal, f.detector, ev, result)
            return
        sig = f.signal
        vr = model.value_rules
        if vr is None:  # a fault signal exists only under value rules (core/value_rules.py)
            raise RuntimeError(f"{model.model_id}: fault signal {sig.signal} without value rules")
        result.quality_alerts.append(quality_alert(
            self.config, model, vr.rule, sig, f.feature, f.fault, f.detector, ev))
        sig.rebaseline(model.events)

    def _decide(self, model: ModelState, ev: InferenceEvent, result: BatchResult,
                alert: DriftAlert | None) -> None:
        """Apply the model's retrain policy (core/retrain.py) at this event."""
        rule = model.rule.retrain
        t = ev.event_time
        d = decide(rule, model.retrain, t, model.last_retrain_at, list(model.signals),
                   model.events)
        if d is None:
            return
        pos = ev.position
        trigger = (RequestTrigger.of(alert.detected_at) if alert is not None else RequestTrigger(
            ev.event_id, pos.topic, pos.partition, pos.offset, iso_time(t), None))
        result.retrain_requests.append(retrain_request(
            rule, d, model.model_id, ev.model_version, trigger, t, model.rule.sample_rate))
        model.last_retrain_at = t
        model.retrain_requests += 1



def collecting(state: MonitorState) -> list[dict[str, Any]]:
    """Signals not yet watched: still collecting their reference, with the values they have
    and the values they need (replay's summary, ``check-config``, the metrics)."""
    out = []
    for model in state.models.values():
        for sig in model.signals.values():
            if sig.detectors is None:
                out.append({"model_id": model.model_id, "model_version": model.model_version,
                            "signal": sig.signal, "have": len(sig.reference),
                            "need": sig.watched_after})
    return sorted(out, key=lambda r: (r["model_id"], str(r["model_version"]), r["signal"]))


def not_watchable(state: MonitorState) -> list[dict[str, Any]]:
    """Signals whose last reference could not support their budget (core/watchable.py), with
    the assessment: still growing their reference (``watched: False``), or watched on a full
    reference that detects slowly (replay's summary, ``check-config``, ``evaluate``)."""
    out = []
    for model in state.models.values():
        for sig in model.signals.values():
            w = sig.watch
            if w is not None and not w["watchable"]:
                out.append({"model_id": model.model_id, "model_version": model.model_version,
                            "signal": sig.signal, "watched": sig.detectors is not None,
                            "growing": sig.detectors is None or sig.growing,
                            "have": len(sig.reference), "assessment": w})
    return sorted(out, key=lambda r: (r["model_id"], str(r["model_version"]), r["signal"]))



def _over_feature_limit(model: ModelState, features: dict[str, Any], limit: int) -> bool:
    """Would these features take a model past ``limit`` distinct features? Counted on what
    its saved state holds (value rules' features, else its signals), so a model reloaded
    from the store decides the same as one that stayed cached."""
    mq = model.value_rules
    if mq is not None:
        known: Any = mq.features
        new = sum(1 for name in features if name not in known)
        return len(known) + new > limit
    signals = model.signals
    new = sum(1 for name in features if "feature:" + name not in signals)
    return len(signals) + new > limit



def _number(v: Any) -> float | None:
    """A finite float from a JSON value, or None (missing, text, non-finite)."""
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int or t is bool:
        return float(v)
    return None
