"""The event gate: whole-event checks *before* the core. Pure.

No I/O happens here; the adapter passes the processing clock in, and the pipeline asks a
:class:`~stream_monitor.state.dedupe.DedupeStore` which event ids were claimed before.
:class:`EventGate` applies the config's ``quality`` section to each raw record, in this order
(README "Data quality"): size (``too_large``, on the raw bytes, before decoding), decoding
(``undecodable``, ``not_an_object``, ``missing_field``, ``wrong_type``, ``non_finite``
timestamp; for a Schema Registry format, the adapter's faults first: ``wrong_magic_byte``,
``unknown_schema``, ``registry_refused``, ``schema_mismatch``, ``undecodable_payload``),
limits (``too_many_features``, ``too_many_classes``, ``embedding_too_long``,
``id_too_long``), ``unknown_model`` (when the config says ``dead_letter``),
``timestamp_in_future`` / ``timestamp_too_old`` (against the processing clock), then
``duplicate``. A failing record becomes a
:class:`DeadLetter` with its original bytes; the others become :class:`InferenceEvent` s for
the core. Between the timestamp rules and ``duplicate``, a model's ``sample_rate`` below 1
leaves out the events whose ``event_id`` hashes
above it (core/sampling.py; counted, not dead-lettered).

The checks of single values inside an admitted event are the core's value rules
(core/value_rules.py). Every rejection, by either, is counted in one place,
:class:`QualityCounters`, returned with the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from ..contracts.records import (
    DeadLetter,
    InferenceEvent,
    LabelEvent,
    RawRecord,
    decode_inference,
    decode_label,
    iso_time,
)
from .plan import ModelPlan, MonitorPlan
from .sampling import sampled

__all__ = ["NO_MODEL", "Admitted", "Claim", "Claims", "EventGate", "QualityCounters",
           "position_key"]

# Model label for dead letters that belong to no watched model (undecodable, unknown model):
# keeps the counters' cardinality bounded by the config.
NO_MODEL = ""


# ---------------------------------------------------------------------------------------------
# Counters


@dataclass(slots=True)
class QualityCounters:
    """What the gate and the value rules rejected in one batch: the one place the observability
    exports read.

    ``dead_letters``: (model_id, reason_code) -> events; model_id is ``""`` when the event has
    no watched model (undecodable, unknown model). ``rejected_values``: (model_id, signal,
    reason) -> values, with signal ``feature:<name>`` or ``prediction`` and reason one of
    ``missing``, ``non_finite``, ``out_of_bounds``, ``unseen_category``.

    >>> c = QualityCounters()
    >>> c.dead_letter("", "undecodable"); c.reject("m", "feature:x", "missing")
    >>> c.total_dead_letters(), c.rejected_values[("m", "feature:x", "missing")]
    (1, 1)
    """

    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected_values: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # (model_id, "inference" | "label") -> records left out by the model's sample_rate.
    sampled_out: Counter[tuple[str, str]] = field(default_factory=Counter)

    def dead_letter(self, model_id: str, reason_code: str) -> None:
        self.dead_letters[(model_id, reason_code)] += 1

    def reject(self, model_id: str, signal: str, reason: str) -> None:
        self.rejected_values[(model_id, signal, reason)] += 1

    def merge(self, other: QualityCounters) -> None:
        self.dead_letters.update(other.dead_letters)
        self.rejected_values.update(other.rejected_values)
        self.sampled_out.update(other.sampled_out)

    def total_dead_letters(self) -> int:
        return sum(self.dead_letters.values())

    def by_reason(self) -> Counter[str]:
        """Dead letters per reason code, all models together."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.dead_letters.items():
            out[reason] += n
        return out


# ---------------------------------------------------------------------------------------------
# Whole-event rules


@dataclass(slots=True, frozen=True)
class Claim:
    """An event's claim on its id within the duplicate window: the (model, event id) and the
    position of the record that carries it, ``topic:partition:offset``. The same record
    redelivered after a crash makes the same claim, so it is not a duplicate of itself."""

    model_id: str
    event_id: str
    position: str


@dataclass(slots=True)
class Claims:
    """What the duplicate rule asks of the dedupe store (state/dedupe.py): claim these ids for
    ``window`` seconds at processing time ``now``. The answer, ``first_seen``, per claim: None
    when it holds the claim (new, or the same record again), else the position of the record
    that claimed the id first."""

    claims: list[Claim]
    window: float
    now: float
    first_seen: list[str | None] = field(default_factory=list)


@dataclass(slots=True)
class Admitted:
    """What passed the gate: the batch's inference ``events`` and ``labels`` (input order),
    the ``dead`` letters of both (inference records' in input order, then labels'), the
    inference records (``inference``, for the original bytes of later refusals) and the labels
    of models whose rule takes none (``labels_ignored``)."""

    events: list[InferenceEvent]
    labels: list[LabelEvent]
    dead: list[DeadLetter]
    inference: Sequence[RawRecord]
    labels_ignored: int = 0


def position_key(ev: InferenceEvent) -> str:
    """Where an event's record is, as ``topic:partition:offset`` (the form a claim keeps)."""
    p = ev.position
    return f"{p.topic}:{p.partition}:{p.offset}"


class EventGate:
    """Whole-event rules of the plan's ``quality`` (the config's ``quality`` section). Pure:
    ``now`` is passed in.

    >>> from stream_monitor.config import parse_config  # the YAML, compiled into a plan
    >>> from stream_monitor.contracts import Position, RawRecord
    >>> cfg = parse_config({"quality": {"max_message_bytes": 64, "unknown_model": "dead_letter"},
    ...     "models": [{"match": "m", "signals": [{"match": "*", "detectors": ["adwin"]}]}]})
    >>> gate, counters = EventGate(cfg), QualityCounters()
    >>> raws = [RawRecord(b'{"event_id":"1","model_id":"m","features":{},"prediction":1}',
    ...                   Position("t", 0, 0)),
    ...         RawRecord(b'{"event_id":"2","model_id":"other","features":{},"prediction":1}',
    ...                   Position("t", 0, 1)),
    ...         RawRecord(b"x" * 65, Position("t", 0, 2))]
    >>> events, dead = gate.admit(raws, now=0.0, counters=counters)
    >>> [e.event_id for e in events], [d.reason_code for d in dead]
    (['1'], ['unknown_model', 'too_large'])
    """

    def __init__(self, config: MonitorPlan) -> None:
        q = config.quality
        self.config = config
        self.max_bytes = q.max_message_bytes
        self.dead_letter_unknown = q.unknown_model == "dead_letter"
        self.max_future = q.timestamps.max_future_seconds
        self.max_past = q.timestamps.max_past_seconds
        self.duplicate_window = q.duplicates.window_seconds
        self.max_features = q.max_features_per_event
        self.max_classes = q.max_classes_per_event
        self.max_embedding = q.max_embedding_length
        self.max_id = q.max_id_length
        # input.inference.fields / feature_fields: where the contract's fields are (None: as is).
        self.mapping = config.input.inference.mapping()
        self.label_mapping = config.input.labels.mapping()
        self.label_topic = config.topics.labels
        # Model id -> its rule (None: no rule matches): looked up once per model.
        self._rules: dict[str, ModelPlan | None] = {}
        # Sample rates below 1 (docs/scaling.md "Sampling a hot model"): off, no cost.
        self.samples = any(r.sample_rate < 1.0 for r in config.models)

    @property
    def checks_duplicates(self) -> bool:
        return self.duplicate_window > 0

    def rule(self, model_id: str) -> ModelPlan | None:
        """The model's rule (None: no rule matches it)."""
        rules = self._rules
        try:
            return rules[model_id]
        except KeyError:
            pass
        if len(rules) > 100_000:  # ids of unknown models must not grow it forever
            rules.clear()
        rule = rules[model_id] = self.config.model_rule(model_id)
        return rule

    def watched(self, model_id: str) -> bool:
        return self.rule(model_id) is not None

    def admit_batch(self, raws: Sequence[RawRecord], now: float, counters: QualityCounters,
                    ) -> Generator[Claims, None, Admitted]:
        """A batch through every whole-record rule: inference records (:meth:`admit`), their
        duplicates (the ids' claims asked of the dedupe store, one :class:`Claims`), then the
        label records (:meth:`admit_labels`). Both topics come in one batch."""
        inference: Sequence[RawRecord] = raws
        label_raws: list[RawRecord] = []
        topic = self.label_topic
        if any(r.position.topic == topic for r in raws):
            inference = [r for r in raws if r.position.topic != topic]
            label_raws = [r for r in raws if r.position.topic == topic]
        events, dead = self.admit(inference, now, counters)
        if self.checks_duplicates and events:
            # Claims are written before the state: a batch retried after a failure finds its
            # own claims (same positions) and is not mistaken for duplicates of itself.
            idx, claims = self.claims(events)
            ask = Claims(claims, self.duplicate_window, now)
            yield ask
            events, dups = self.drop_duplicates(inference, events, idx, ask.first_seen,
                                                counters)
            if dups:
                order = {r.position: i for i, r in enumerate(inference)}
                dead = sorted([*dead, *dups], key=lambda d: order[d.raw.position])
        labels, ignored = self.admit_labels(label_raws, dead, counters)
        return Admitted(events, labels, dead, inference, ignored)

    def admit_labels(self, raws: Sequence[RawRecord], dead: list[DeadLetter],
                     counters: QualityCounters) -> tuple[list[LabelEvent], int]:
        """Decode label records; bad ones join ``dead`` (same reason codes as events). Labels
        of models whose rule takes no labels are ignored (counted), or dead-lettered as
        ``unknown_model`` when no rule matches and ``quality.unknown_model`` says so; a
        model's ``sample_rate`` leaves out the labels of the predictions it left out."""
        labels: list[LabelEvent] = []
        ignored = 0
        for raw in raws:
            lab = decode_label(raw, self.label_mapping)
            if isinstance(lab, DeadLetter):
                dead.append(lab)
                counters.dead_letter(NO_MODEL, lab.reason_code)
                continue
            rule = self.rule(lab.model_id)
            if rule is None and self.dead_letter_unknown:
                dead.append(DeadLetter(raw, "unknown_model",
                                       f"no model rule matches model_id {lab.model_id!r}"))
                counters.dead_letter(NO_MODEL, "unknown_model")
            elif rule is None or rule.labels is None:
                ignored += 1
            elif rule.sample_rate < 1.0 and not sampled(lab.event_id, rule.sample_rate):
                counters.sampled_out[(lab.model_id, "label")] += 1
            else:
                labels.append(lab)
        return labels, ignored

    def admit(self, raws: Sequence[RawRecord], now: float,
              counters: QualityCounters) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """Decode and check each record; never raises. Every record comes back exactly once:
        as an event or as a dead letter (both in input order), unless its model's
        ``sample_rate`` leaves it out (counted in ``counters.sampled_out``). Sampling comes
        after the whole-event rules and before the duplicate check."""
        events: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        max_bytes = self.max_bytes
        per_model = (self.dead_letter_unknown or self.max_future is not None
                     or self.max_past is not None)
        samples = self.samples
        for raw in raws:
            value = raw.value
            if value is not None and len(value) > max_bytes:
                dead.append(DeadLetter(raw, "too_large", (
                    f"the value is {len(value)} bytes, over quality.max_message_bytes = "
                    f"{max_bytes}; send fewer or shorter fields, or raise the limit")))
                counters.dead_letter(NO_MODEL, "too_large")
                continue
            ev = decode_inference(raw, self.mapping)
            if isinstance(ev, DeadLetter):
                dead.append(ev)
                counters.dead_letter(NO_MODEL, ev.reason_code)
                continue
            limit = self._limit_fault(ev)
            if limit is not None:
                code, reason = limit
                dead.append(DeadLetter(raw, code, reason))
                counters.dead_letter(NO_MODEL, code)
                continue
            if per_model or samples:
                rule = self.rule(ev.model_id)
                fault = self._event_fault(ev, rule, now) if per_model else None
                if fault is not None:
                    code, reason = fault
                    dead.append(DeadLetter(raw, code, reason))
                    counters.dead_letter(NO_MODEL if code == "unknown_model" else ev.model_id,
                                         code)
                    continue
                if samples and rule is not None and rule.sample_rate < 1.0 and not sampled(
                        ev.event_id, rule.sample_rate):
                    counters.sampled_out[(ev.model_id, "inference")] += 1
                    continue
            events.append(ev)
        return events, dead

    def _limit_fault(self, ev: InferenceEvent) -> tuple[str, str] | None:
        """Bounds on what one event may make the worker hold: its number of features and the
        length of its ids (which become Redis keys and output fields)."""
        n = len(ev.features)
        if n > self.max_features:
            return "too_many_features", (
                f"the event has {n} features, over quality.max_features_per_event = "
                f"{self.max_features}; send fewer features, or raise the limit")
        probs = ev.probabilities
        if probs is not None and len(probs) > self.max_classes:
            return "too_many_classes", (
                f"the event's probabilities name {len(probs)} classes, over "
                f"quality.max_classes_per_event = {self.max_classes}; send the classes' "
                "probabilities only, or raise the limit")
        emb = ev.embeddings
        if emb is not None and len(emb) > self.max_embedding:
            return "embedding_too_long", (
                f"the event's embeddings have {len(emb)} elements, over "
                f"quality.max_embedding_length = {self.max_embedding}; send a shorter vector, "
                "or raise the limit")
        max_id = self.max_id
        if len(ev.model_id) > max_id or len(ev.event_id) > max_id or (
                ev.model_version is not None and len(ev.model_version) > max_id):
            return "id_too_long", (
                f"model_id, event_id or model_version is longer than quality.max_id_length = "
                f"{max_id} characters; use shorter ids, or raise the limit")
        return None

    def _event_fault(self, ev: InferenceEvent, rule: ModelPlan | None,
                     now: float) -> tuple[str, str] | None:
        if rule is None:
            if self.dead_letter_unknown:
                return "unknown_model", (
                    f"no rule in `models` matches model_id {ev.model_id!r}; add a rule for it, "
                    "or set quality.unknown_model: ignore")
            return None  # ignored: the core counts it as unwatched and skips it
        t = ev.timestamp
        if t is None and ev.position.timestamp_ms is not None:
            t = ev.position.timestamp_ms / 1000.0
        if t is None:
            return None
        if self.max_future is not None and t > now + self.max_future:
            return "timestamp_in_future", (
                f"event time {_when(t)} is {t - now:.0f}s ahead of the processing clock "
                f"({_when(now)}); quality.timestamps.max_future_seconds is {self.max_future:g}. "
                "Fix the producer's clock or raise the limit")
        if self.max_past is not None and t < now - self.max_past:
            return "timestamp_too_old", (
                f"event time {_when(t)} is {now - t:.0f}s behind the processing clock "
                f"({_when(now)}); quality.timestamps.max_past_seconds is {self.max_past:g}. "
                "Replay old data with a config without this limit, or raise it")
        return None

    # -- duplicates: the claims go to a DedupeStore (I/O, in the pipeline) ------------------
    def claims(self, events: Sequence[InferenceEvent]) -> tuple[list[int], list[Claim]]:
        """The events whose id must be claimed (those of watched models), and their claims."""
        idx: list[int] = []
        claims: list[Claim] = []
        for i, ev in enumerate(events):
            if self.watched(ev.model_id):
                idx.append(i)
                claims.append(Claim(ev.model_id, ev.event_id, position_key(ev)))
        return idx, claims

    def drop_duplicates(self, raws: Sequence[RawRecord], events: Sequence[InferenceEvent],
                        idx: Sequence[int], first_seen: Sequence[str | None],
                        counters: QualityCounters) -> tuple[list[InferenceEvent], list[DeadLetter]]:
        """Split events by the store's answers: ``first_seen[k]`` is None when event
        ``idx[k]`` holds the claim (new, or the same record again), else the position of the
        record that claimed its id first. ``raws`` are the batch's records, for the original
        bytes of the duplicates."""
        dup: dict[int, str] = {i: p for i, p in zip(idx, first_seen, strict=True) if p is not None}
        if not dup:
            return list(events), []
        by_position = {r.position: r for r in raws}
        kept: list[InferenceEvent] = []
        dead: list[DeadLetter] = []
        window = self.duplicate_window
        for i, ev in enumerate(events):
            first = dup.get(i)
            if first is None:
                kept.append(ev)
                continue
            dead.append(DeadLetter(by_position[ev.position], "duplicate", (
                f"event_id {ev.event_id!r} of model {ev.model_id!r} was already seen at "
                f"{first} (topic:partition:offset) within quality.duplicates.window_seconds = "
                f"{window:g}; the first one was used. Make event ids unique, or stop the "
                "producer resending")))
            counters.dead_letter(ev.model_id, "duplicate")
        return kept, dead


def _when(t: float) -> str:
    try:
        return iso_time(t)
    except (ValueError, OverflowError, OSError):
        return f"{t:.3f}"
