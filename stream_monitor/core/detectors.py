"""Detector registry and pickle-free detector checkpoints.

Every detector is a River object driven with ``update(x)`` and read with ``drift_detected``.
The registry maps a config name (``adwin``, ``page_hinkley``, ...) to the River class, to the
kind of input it expects, and to our defaults.

Checkpoints are plain JSON-able data. A detector is rebuilt by calling its class with the
configured parameters and then overlaying the saved attributes. Only values of allow-listed
types are decoded (numbers, strings, lists, deques, River ``Mean``/``Var``/``EWMean`` and the
HDDM_W ``SampleInfo``, ``random.Random`` state and the bytes of ADWIN's compiled helper), so
nothing read back from a store can execute code.

>>> det = build_detector("page_hinkley", {"threshold": 5.0})
>>> for x in [0.0] * 40 + [3.0]:
...     _ = det.update(x)
>>> twin = restore_detector("page_hinkley", {"threshold": 5.0}, checkpoint(det))
>>> for d in (det, twin):
...     _ = d.update(3.0)
>>> det.drift_detected, twin.drift_detected
(True, True)
"""

from __future__ import annotations

import base64
import inspect
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from river import drift, stats
from river.drift import binary
from river.drift.binary.hddm_w import SampleInfo

from ..errors import StateCorruptError
from .adwin import ADWIN
from .bernoulli import BernoulliCusum
from .cusum import Cusum
from .multinomial import Multinomial
from .page_hinkley import PageHinkley

__all__ = [
    "REGISTRY",
    "DetectorKind",
    "build_detector",
    "checkpoint",
    "restore_detector",
]

InputKind = Literal["standardized", "binary", "categorical"]


@dataclass(frozen=True)
class DetectorKind:
    """A detector type that configs can name."""

    name: str
    cls: type
    input: InputKind
    defaults: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        sig = inspect.signature(self.cls)  # the constructor's parameters, without self
        return tuple(p for p in sig.parameters if p != "self")

    def params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Effective parameters: our defaults, then the config's overrides."""
        merged = dict(self.defaults)
        merged.update(overrides or {})
        return merged


REGISTRY: dict[str, DetectorKind] = {
    k.name: k
    for k in [
        DetectorKind(
            "adwin",
            ADWIN,  # River's, with a batch path (core/adwin.py)
            "standardized",
            {"delta": 0.002, "clock": 32},
            "ADaptive WINdowing: two sub-windows whose means differ by more than a Hoeffding "
            "bound.",
        ),
        # River's Page-Hinkley thresholds are in the units of its input. We feed it values
        # standardized against the reference window, so these defaults are in reference
        # standard deviations: shifts below `delta` (0.25 sd) are ignored, and a cumulative
        # excess of 30 sd fires. Measured here on N(0,1) (seeded, River 0.26.1): no alarm in
        # 1M events (threshold 20 gave 6 in 500k); median delay 39 events for a 1 sd shift,
        # 130 for 0.5 sd.
        DetectorKind(
            "page_hinkley",
            PageHinkley,
            "standardized",
            {"min_instances": 30, "delta": 0.25, "threshold": 30.0, "alpha": 1.0},
            "Page-Hinkley cumulative-sum test on the standardized value.",
        ),
        DetectorKind(
            "kswin",
            drift.KSWIN,
            "standardized",
            {"alpha": 0.005, "window_size": 100, "stat_size": 30, "seed": 42},
            "Kolmogorov-Smirnov test between a sliding window and its most recent part.",
        ),
        # Ours (core/cusum.py): level and spread against the reference, thresholds calibrated
        # per reference to the false-alarm budget (core/calibrate.py, docs/detection.md).
        DetectorKind(
            "cusum",
            Cusum,
            "standardized",
            {"k": 0.5, "k_slow": 0.25, "scale_k": 0.3, "clip": 3.0},
            "Two-sided CUSUMs on level and spread against the reference, calibrated to the "
            "false-alarm budget.",
        ),
        # Ours (core/bernoulli.py): log-likelihood-ratio CUSUMs of the reference rate against a
        # few higher (and lower) rates, on one 0/1 value per event; alternatives and thresholds
        # calibrated per reference to the budget, with a prior on the rate and a Markov-chain
        # dependence estimate. A `cusum` on a binary signal is built as this one.
        DetectorKind(
            "bernoulli_cusum",
            BernoulliCusum,
            "binary",
            {},
            "Bernoulli (0/1 rate) CUSUMs against the reference rate, calibrated to the "
            "false-alarm budget.",
        ),
        # Ours (core/multinomial.py): the category mix of a categorical signal against its
        # reference, calibrated to the budget. A categorical signal gets it in place of `cusum`
        # (or of River's detectors, which take numbers).
        DetectorKind(
            "multinomial_cusum",
            Multinomial,
            "categorical",
            {"w": 10.0},
            "Mixture CUSUM of the category mix against the reference (categorical signals), "
            "calibrated to the false-alarm budget.",
        ),
        DetectorKind(
            "ddm", binary.DDM, "binary", {}, "Drift Detection Method on a 0/1 error stream."
        ),
        DetectorKind("eddm", binary.EDDM, "binary", {}, "Early DDM: distance between errors."),
        DetectorKind(
            "hddm_a", binary.HDDMA, "binary", {}, "HDDM with Hoeffding bounds on averages."
        ),
        DetectorKind(
            "hddm_w", binary.HDDMW, "binary", {}, "HDDM with McDiarmid bounds on weighted averages."
        ),
        DetectorKind(
            "fhddm", binary.FHDDM, "binary", {}, "Fast Hoeffding DDM over a sliding window."
        ),
    ]
}


def build_detector(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """A fresh River detector of a registered kind."""
    kind = REGISTRY[name]
    return kind.cls(**kind.params(overrides))


# ---------------------------------------------------------------------------------------------
# Checkpoint codec. Tagged JSON values: {"$f": "inf"} for non-finite floats, {"$b": base64},
# {"$dq": [...], "maxlen": n}, {"$rng": [...]} and {"$o": "<allow-listed class>", "d": {...}}.

_STATS_CLASSES: dict[str, type[Any]] = {
    "Mean": stats.Mean,
    "Var": stats.Var,
    "EWMean": stats.EWMean,
    "SampleInfo": SampleInfo,
}
# River keeps some state (ADWIN's window, EWMean) in compiled Rust objects whose
# __getstate__/__setstate__ give and take plain bytes. Only these classes are accepted.
_RUST_CLASSES = frozenset({"AdaptiveWindowing", "RsEWMean"})


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):  # includes numpy float64, a float subclass
        return float(value) if math.isfinite(value) else {"$f": repr(float(value))}
    if hasattr(value, "item") and not isinstance(value, list | tuple | deque):  # numpy scalar
        return _enc(value.item())
    if isinstance(value, list | tuple):
        return [_enc(v) for v in value]
    if isinstance(value, deque):
        return {"$dq": [_enc(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, random.Random):
        version, internal, gauss = value.getstate()
        return {"$rng": [version, list(internal), _enc(gauss)]}
    name = type(value).__name__
    if name in _STATS_CLASSES and type(value) is _STATS_CLASSES[name]:
        return {"$o": name, "d": {k: _enc(v) for k, v in vars(value).items()}}
    if name in _RUST_CLASSES and type(value).__module__.startswith("river._river_rust"):
        return {"$rs": name, "b": base64.b64encode(value.__getstate__()).decode()}
    raise TypeError(f"cannot checkpoint a {type(value).__qualname__}")


def _dec(value: Any, template: Any = None) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_dec(v) for v in value]
    if not isinstance(value, dict):
        raise StateCorruptError(f"unexpected value of type {type(value).__name__}")
    if "$f" in value:
        f = float(value["$f"])
        if math.isfinite(f):
            raise StateCorruptError("finite float stored as tagged non-finite")
        return f
    if "$dq" in value:
        maxlen = value.get("maxlen")
        if maxlen is not None and not isinstance(maxlen, int):
            raise StateCorruptError("deque maxlen must be an int")
        return deque((_dec(v) for v in value["$dq"]), maxlen=maxlen)
    if "$rng" in value:
        version, internal, gauss = value["$rng"]
        rng = random.Random()
        rng.setstate((int(version), tuple(int(i) for i in internal), _dec(gauss)))
        return rng
    if "$rs" in value:
        # A compiled object can't be made from nothing: the freshly built detector has one of
        # the same class, and its state is overwritten from the bytes.
        tag = value["$rs"]
        if tag not in _RUST_CLASSES or template is None or type(template).__name__ != tag:
            raise StateCorruptError(f"compiled state {tag!r} found where none is expected")
        data = base64.b64decode(value["b"], validate=True)
        try:
            template.__setstate__(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # bad bytes make the Rust side panic: a BaseException
            raise StateCorruptError(f"compiled state {tag!r} does not decode: {exc}") from None
        return template
    if "$o" in value:
        tag = value["$o"]
        cls = _STATS_CLASSES.get(tag)
        if cls is None:
            raise StateCorruptError(f"class {tag!r} is not allowed in a checkpoint")
        if type(template) is cls:
            obj = template
            _overlay(vars(obj), value["d"], tag)
        else:
            obj = cast(Any, cls).__new__(cls)  # a bare instance; its state comes next
            attrs = vars(obj)
            for k, v in value["d"].items():
                attrs[k] = _dec(v)
        return obj
    raise StateCorruptError(f"unknown tagged value with keys {sorted(value)}")


_PLAIN = (bool, int, float, str, type(None))


def _overlay(attrs: dict[str, Any], state: Mapping[str, Any], where: str) -> None:
    """Decode saved attributes over a freshly built object's. Only attributes the object has
    are accepted, and one holding an object (a ``Mean``, a deque, ...) must get the same type
    back: anything else would only fail later, in the middle of a batch."""
    for k, v in state.items():
        if k not in attrs:
            raise StateCorruptError(f"{where}: unknown attribute {k!r} in checkpoint")
        old = attrs[k]
        new = _dec(v, old)
        if not isinstance(old, _PLAIN) and type(new) is not type(old):
            raise StateCorruptError(f"{where}: attribute {k!r} must be a {type(old).__name__}, "
                                    f"the checkpoint has a {type(new).__name__}")
        attrs[k] = new


def checkpoint(detector: Any) -> dict[str, Any]:
    """The detector's state as JSON-able data (no pickle). Bound methods are left out: they
    are rebuilt by the constructor from the parameters."""
    return {k: _enc(v) for k, v in vars(detector).items() if not inspect.ismethod(v)}


def restore_detector(
    name: str, overrides: Mapping[str, Any] | None, state: Mapping[str, Any]
) -> Any:
    """Rebuild a detector from its parameters and a :func:`checkpoint`.

    The result continues bit-identically to the detector that was checkpointed.
    """
    det = build_detector(name, overrides)
    try:
        if isinstance(det, PageHinkley) and "_x_mean" in state:
            state = _page_hinkley_of_river(state)
        _overlay(vars(det), state, name)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateCorruptError(f"{name}: bad checkpoint: {exc}") from exc
    return det


# River's Page-Hinkley fields, as checkpoints written before the project owned the algorithm
# (core/page_hinkley.py) hold them, and the project's names for them.
_RIVER_PAGE_HINKLEY = {"_sum_increase": "sum_increase", "_sum_decrease": "sum_decrease",
                       "_min_increase": "min_increase", "_max_decrease": "max_decrease"}


def _page_hinkley_of_river(state: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint of River's ``PageHinkley`` (its running mean a ``Mean`` with ``n`` and
    ``_mean``) in the fields of the project's own: the same numbers, renamed."""
    out = {_RIVER_PAGE_HINKLEY.get(k, k): v for k, v in state.items() if k != "_x_mean"}
    mean = state["_x_mean"]
    if (not isinstance(mean, dict) or mean.get("$o") != "Mean"
            or not isinstance(mean.get("d"), dict) or set(mean["d"]) - {"n", "_mean"}):
        raise StateCorruptError("page_hinkley: '_x_mean' must be a River Mean's n and _mean")
    out["n"] = mean["d"].get("n", 0.0)
    out["mean"] = mean["d"].get("_mean", 0.0)
    return out
