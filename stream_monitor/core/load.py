"""The state units a batch needs, in memory: asked of the store, restored, and the post-deploy
watch of versions seen for the first time started (core/deploy.py's policy). Pure: the store
is asked through :class:`Load`, :class:`Versions` and :class:`Expire`, which the pipeline
answers (pipeline.py)."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..contracts.records import InferenceEvent
from ..contracts.units import split_unit
from .deploy import deploys, start_watch, watched_previous
from .label_join import JoinedPair
from .model_state import ModelState, MonitorState, StateBuilder

__all__ = ["Expire", "Load", "Loaded", "StoredSignal", "StoredUnit", "Versions", "load_units"]


class StoredSignal(Protocol):
    """A signal's checkpoint as the store gives it back (state/base.py ``SignalSnapshot``)."""

    @property
    def meta(self) -> dict[str, Any]: ...  # the checkpoint's JSON
    @property
    def recent(self) -> list[float]: ...
    @property
    def reference(self) -> list[float]: ...


class StoredUnit(Protocol):
    """A state unit as the store gives it back (state/base.py ``ModelSnapshot``)."""

    @property
    def meta(self) -> dict[str, Any]: ...  # the checkpoint's JSON
    @property
    def signals(self) -> Sequence[StoredSignal]: ...
    @property
    def revision(self) -> int: ...
    @property
    def outbox(self) -> Mapping[str, bytes]: ...


@dataclass(slots=True)
class Load:
    """Ask the store for the ``units`` not in memory. The answer, ``found``: those it holds."""

    units: set[str]
    found: Mapping[str, StoredUnit] = field(default_factory=dict)


@dataclass(slots=True)
class Versions:
    """Ask the store for these models' version index (version -> first seen, event time)."""

    model_ids: set[str]
    index: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(slots=True)
class Expire:
    """Tell the store to let these units (unit -> its signals) expire ``seconds`` after now."""

    units: dict[str, list[str]]
    seconds: float


@dataclass(slots=True)
class Loaded:
    """The batch's state units in memory (``units``, the previous versions its post-deploy
    watches compare with included), and the outboxes an earlier run saved in them and never
    saw confirmed (``recovered``: unit -> outbox field -> entry, in load order)."""

    units: set[str]
    recovered: dict[str, dict[str, bytes]]


def load_units(builder: StateBuilder, state: MonitorState, events: Sequence[InferenceEvent],
               pairs: Sequence[JoinedPair]) -> Generator[Load | Versions | Expire, None, Loaded]:
    """Every state unit of the batch's events and pairs in ``state``: restored from the store,
    or new; a version first seen starts its post-deploy watch (on the model's version index);
    the previous version of a watched one stays loaded."""
    firsts: dict[tuple[str, str | None], InferenceEvent] = {}
    for ev in events:
        k = (ev.model_id, ev.model_version)
        if k not in firsts:
            firsts[k] = ev
    first: dict[str, InferenceEvent] = {}
    for (mid, ver), ev in firsts.items():
        first.setdefault(builder.unit_of(mid, ver), ev)
    units = set(first) | {builder.unit_of(p.model_id, p.version) for p in pairs}
    recovered: dict[str, dict[str, bytes]] = {}
    load = Load(units)
    yield load
    models = state.models
    missing = state.missing(units)  # (what the store was asked for)
    _restore(builder, models, load.found, recovered)
    new = sorted((u for u in missing if u not in models and u in first
                  and split_unit(u)[1] is not None), key=lambda u: first[u].event_time)
    if new:
        # Which of them start a post-deploy watch: core/deploy.py's policy, on the models'
        # version index.
        ask = Versions({split_unit(u)[0] for u in new})
        yield ask
        firsts_seen = [(u, mid, ver, first[u].event_time) for u in new
                       for mid, ver in (split_unit(u),) if ver is not None]
        for d in deploys(firsts_seen, ask.index):
            model = builder.new_model(d.model_id, d.version)
            if model is None:
                continue
            models[d.unit] = model
            if d.previous_unit not in models:
                load = Load({d.previous_unit})
                yield load
                _restore(builder, models, load.found, recovered)
            prev = models.get(d.previous_unit)
            start_watch(model, prev, d.previous_version, d.first_seen)
            if prev is not None:
                yield Expire({d.previous_unit: list(prev.signals)},
                             prev.rule.versions.expire_seconds)
    prevs = watched_previous(models, units)
    if prevs - models.keys():
        load = Load(prevs - models.keys())
        yield load
        _restore(builder, models, load.found, recovered)
    return Loaded(units | prevs, recovered)


def _restore(builder: StateBuilder, models: dict[str, ModelState], found: Mapping[str, StoredUnit],
             recovered: dict[str, dict[str, bytes]]) -> None:
    """Units the store gave back, restored into ``models``; their unconfirmed outboxes."""
    for uid, snap in found.items():
        if snap.outbox:
            recovered[uid] = dict(snap.outbox)
        model = builder.restore_model(snap.meta)
        if model is None:
            continue  # no longer watched by this config
        model.revision = snap.revision
        for s in snap.signals:
            builder.restore_signal(model, s.meta, s.recent, s.reference)
        models[uid] = model
