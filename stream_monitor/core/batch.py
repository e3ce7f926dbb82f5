"""One batch, decided: its raw records in, its typed outputs and changed state out. Pure.

The pipeline (pipeline.py) hands a batch's raw records to :meth:`BatchCore.steps` and answers,
one at a time, what it asks along the way (a :data:`Need`: what the stores hold); it gets back
a :class:`BatchOutcome`. The steps, each in its own module:

1. the gate (core/gate.py): inference records become events or dead letters, duplicates
   found by the ids' claims (:class:`~stream_monitor.core.gate.Claims`), label records become
   labels;
2. the label join (core/label_join.py): predictions and labels through the join store
   (:class:`~stream_monitor.core.label_join.Join`), giving the joined pairs;
3. the state (core/load.py): the units the batch touches, asked of the store
   (:class:`~stream_monitor.core.load.Load`) and restored; a version first seen starts its
   post-deploy watch;
4. detection (core/monitor.py): events and pairs through the detectors, in parts with a
   :class:`~stream_monitor.core.monitor.Pause` between them;
5. the outputs (here): dead letters (the gate's and the core's refusals, in input order), then
   the batch's alerts, resolutions, retrain requests, quality alerts and deployment checks,
   each routed to its topic, its Kafka key and the outbox of its state unit. They are encoded,
   once, by contracts/outputs.py.

The questions carry their answers back (their answer fields); nothing here waits on I/O, so a
test drives a batch with dicts for stores.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

from ..contracts.output_records import (
    DeploymentCheck,
    DriftAlert,
    DriftResolved,
    IncidentRecord,
    QualityAlert,
    RetrainRequest,
)
from ..contracts.outputs import Outgoing
from ..contracts.records import DeadLetter, InferenceEvent, RawRecord
from .gate import Admitted, Claims, EventGate, QualityCounters
from .label_join import Join, LabelStats, join_labels
from .load import Expire, Load, Versions, load_units
from .model_state import MonitorState
from .monitor import BatchResult, Monitor, Pause
from .plan import MonitorPlan

__all__ = ["BatchCore", "BatchOutcome", "Need"]

# What a batch asks of its caller, in the order it needs the answers.
Need = Claims | Join | Load | Versions | Expire | Pause
# The records of a model's state unit (kept in its outbox until Kafka confirmed them).
ModelOutput = (DriftAlert | DriftResolved | RetrainRequest | QualityAlert | DeploymentCheck
               | IncidentRecord)


@dataclass(slots=True)
class BatchOutcome:
    """What one batch decided: its records to publish, routed (``outgoing``: dead letters
    first, in input order), the outboxes an earlier run left unconfirmed (``recovered``, to
    publish first), the core's result (alerts and the rest, the state units changed:
    ``result.dirty_models``), the state units the batch holds in memory (``units``) and its
    counts."""

    outgoing: list[Outgoing]
    recovered: dict[str, dict[str, bytes]]
    result: BatchResult
    counters: QualityCounters
    units: set[str]
    dead_letters: int
    labels: int
    labels_ignored: int
    label_stats: dict[str, LabelStats]


class BatchCore:
    """The batch steps of one plan (built once, kept by the pipeline)."""

    # Events per call of the detectors between two pauses. A part gives each model a run of
    # its events for the batch path (core/vector.py MIN_EVENTS); 2,000 events take about what
    # 500 took value by value.
    def __init__(self, plan: MonitorPlan, chunk: int = 2000) -> None:
        self.plan = plan
        self.monitor = Monitor(plan)
        self.gate = EventGate(plan)
        self.chunk = chunk  # events per call of the detectors between two pauses

    def steps(self, raws: Sequence[RawRecord], state: MonitorState, now: float,
            ) -> Generator[Need, None, BatchOutcome]:
        """Decide one batch at processing time ``now`` (the timestamp rules, the duplicate
        window, the dead letters' time), on the model states in ``state`` (updated in
        place)."""
        counters = QualityCounters()
        admitted = yield from self.gate.admit_batch(raws, now, counters)
        join = yield from join_labels(self.plan, admitted.events, admitted.labels, state.models)
        loaded = yield from load_units(self.monitor, state, admitted.events, join.pairs)
        result = yield from self.monitor.detect(admitted.events, state, counters, join.pairs,
                                                self.chunk)
        dead = admitted.dead
        if result.rejected:
            dead = _with_rejected(admitted, result.rejected, counters)
        return BatchOutcome(self._outgoing(dead, result, state, now), loaded.recovered, result,
                            counters, loaded.units, len(dead), len(admitted.labels),
                            admitted.labels_ignored, join.stats)

    def _outgoing(self, dead: list[DeadLetter], result: BatchResult, state: MonitorState,
                  now: float) -> list[Outgoing]:
        """The batch's records, each with its topic, key and outbox: dead letters (in no
        outbox: one is a pure function of its input event, which is redelivered and
        dead-lettered again, with the same id, if this run dies), then alerts, resolutions
        (on the alerts topic, after the batch's alerts), retrain requests, data-quality alerts
        (on the alerts topic; their `type` and `schema` header tell them apart), deployment
        checks and incidents (core/incidents.py), each in the outbox of its state unit."""
        plan = self.plan
        topics = plan.topics
        out = [dead_letter_out(plan, d, now) for d in dead]
        unit_of = self.monitor.unit_of
        models = state.models
        groups: tuple[tuple[str, Sequence[ModelOutput]], ...] = (
            (topics.alerts, result.alerts),
            (topics.alerts, result.resolved),
            (topics.retrain, result.retrain_requests),
            (topics.alerts, result.quality_alerts),
            (topics.deployments, result.deployment_checks),
            (topics.incidents, result.incidents))
        for topic, records in groups:
            for r in records:
                uid = unit_of(r.model_id, r.model_version)
                out.append(Outgoing(topic, r.model_id.encode(), r, uid, models[uid].revision))
        return out


def _with_rejected(admitted: Admitted, rejected: list[tuple[InferenceEvent, str, str]],
                   counters: QualityCounters) -> list[DeadLetter]:
    """Dead letters for the events the core refused whole (a per-model limit), merged with
    the gate's in input order (labels' last)."""
    raws = admitted.inference
    by_position = {r.position: r for r in raws}
    order = {r.position: i for i, r in enumerate(raws)}
    dead = admitted.dead
    for ev, code, reason in rejected:
        dead.append(DeadLetter(by_position[ev.position], code, reason))
        counters.dead_letter(ev.model_id, code)
    return sorted(dead, key=lambda d: order.get(d.raw.position, len(order)))


def dead_letter_out(plan: MonitorPlan, dead: DeadLetter, now: float) -> Outgoing:
    """A dead letter as it leaves, under ``privacy.dead_letter_payload``: with ``hash`` neither
    its key nor its reason quotes the record. The batch's dead letters and the worker's
    ``internal_error`` ones (an event the core raised on) both go through here."""
    privacy = plan.privacy
    hashed = privacy.dead_letter_payload == "hash"
    return Outgoing(plan.topics.dead_letter, b"" if hashed else dead.kafka_key,
                    dead.to_record(now, plan.quality.dead_letter_max_bytes,
                                   payload=privacy.dead_letter_payload,
                                   truncated_bytes=privacy.dead_letter_truncated_bytes))
