"""Plot signals with their drift points: what a person looks at to judge an alert."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from .errors import MissingExtraError, UsageError

__all__ = ["place_alerts", "plot_error_rate", "plot_signals", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend. Raises :class:`MissingExtraError`
    (a one-line user error) when the ``[plot]`` extra is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("plotting needs matplotlib, which is not installed: "
                                "pip install 'stream-monitor[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value(ev: dict, signal: str) -> float | None:
    v = ev.get("prediction") if signal == "prediction" else ev.get("features", {}).get(
        signal.removeprefix("feature:"))
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _read_alerts(path: Path) -> list[dict]:
    alerts = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UsageError(f"{path}: line {n} is not JSON; pass the output records of "
                             "replay or demo (JSON lines)") from None
        if isinstance(rec, dict) and rec.get("type") == "drift_alert":
            alerts.append(rec)
    return alerts


def place_alerts(events: list[tuple[int, dict]], alerts: list[dict], *,
                 unplaced: list[str] | None = None,
                 source: str = "the events file") -> dict[str, list[tuple[int, dict]]]:
    """``signal -> [(x, alert)]``: each alert at the position (``x``, the line of the events
    file) of the inference event it names, ``detected_at.event_id``.

    Not at ``detected_at.offset``: an alert on a label-based signal names the record that
    completed the (prediction, label) pair, usually the label on the labels topic, whose offset
    means nothing on the inference axis. Alerts whose event is not among ``events`` are left
    out and described in ``unplaced``.

    >>> events = [(0, {"event_id": "m-0"}), (1, {"event_id": "m-1"})]
    >>> label_alert = {"signal": "performance:error", "detector": {"name": "adwin"},
    ...                "detected_at": {"event_id": "m-1", "topic": "labels", "offset": 7}}
    >>> {s: [x for x, _ in xs] for s, xs in place_alerts(events, [label_alert]).items()}
    {'performance:error': [1]}
    """
    at = {e["event_id"]: i for i, e in events if isinstance(e.get("event_id"), str)}
    by_signal: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for a in alerts:
        where = a.get("detected_at") or {}
        x = at.get(where.get("event_id"))
        if x is None:
            if unplaced is not None:
                unplaced.append(f"{a['signal']} ({a['detector']['name']}) at event "
                                f"{where.get('event_id')!r}: not in {source}")
            continue
        by_signal[a["signal"]].append((x, a))
    return by_signal


def plot_signals(events_path: Path, outputs_path: Path, image: Path, model: str | None = None,
                 extra_signals: int = 1, unplaced: list[str] | None = None) -> Path:
    """One panel per alerted signal (plus ``extra_signals`` quiet ones for contrast): the raw
    values by line of the events file, a rolling mean, the reference mean each drift was
    measured against, and a red line at each drift.

    An alert is drawn at the inference event it names (``detected_at.event_id``), not at its
    offset: an alert on a label-based signal (``performance:*``) was detected when the label
    arrived, on the labels topic. Alerts whose event is not in the file are not drawn; their
    descriptions go to ``unplaced``. Raises :class:`UsageError` for a model that is not in
    the files (before anything is written)."""
    alerts = _read_alerts(outputs_path)
    events: list[tuple[int, dict]] = []
    for i, line in enumerate(events_path.read_bytes().splitlines()):
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("model_id"), str):
            events.append((i, ev))
    known = dict.fromkeys([a["model_id"] for a in alerts] + [e["model_id"] for _, e in events])
    if not known:
        raise UsageError(f"{events_path}: no inference events (JSON objects with a model_id) "
                         "to plot")
    if model is None:
        model = next(iter(known))
    elif model not in known:
        raise UsageError(f"no model {model!r} in {events_path.name} or {outputs_path.name}; "
                         f"models there: {', '.join(sorted(known))}")
    plt = pyplot()
    events = [(i, e) for i, e in events if e["model_id"] == model]
    by_signal = place_alerts(events, [a for a in alerts if a["model_id"] == model],
                             unplaced=unplaced, source=events_path.name)
    signals = list(by_signal)
    if events:
        quiet = ["feature:" + f for f in events[0][1].get("features", {})
                 if "feature:" + f not in by_signal]
        signals += quiet[:extra_signals]
    if not signals:
        signals = ["prediction"]
    fig, axes = plt.subplots(len(signals), 1, figsize=(11, 2.6 * len(signals)), sharex=True,
                             squeeze=False)
    first = events[0][0] if events else 0
    for ax, signal in zip(axes[:, 0], signals, strict=True):
        pts = [(i, v) for i, e in events if (v := _value(e, signal)) is not None]
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        ax.plot(xs, ys, ".", ms=1.5, alpha=0.3, color="tab:blue", zorder=1)
        if len(ys) >= 50:
            w = 50
            roll = [sum(ys[k - w:k]) / w for k in range(w, len(ys) + 1)]
            ax.plot(xs[w - 1:], roll, color="tab:blue", lw=1.0, alpha=0.8, zorder=2)
        start = first
        for x, a in sorted(by_signal.get(signal, []), key=lambda t: t[0]):
            ax.axvline(x, color="red", lw=1.5, zorder=4)
            # The reference this drift was measured against: the values since the previous
            # drift (or the start). Drawn above the values, in its own colour.
            ax.hlines(a["evidence"]["reference"]["mean"], start, x, colors="darkorange",
                      linestyles="--", lw=2.0, zorder=3)
            ax.annotate(f"{a['detector']['name']} @ {x}\nshift "
                        f"{a['evidence']['mean_shift_in_reference_std']:+.2f} sd",
                        (x, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -4),
                        textcoords="offset points", va="top", fontsize=8, color="red")
            start = x
        ax.set_ylabel(signal, fontsize=9)
        note = ("no drift detected" if not by_signal.get(signal) else
                "values from the labels topic (not in this file); drift points at the events "
                "the labels belong to" if not ys and signal.startswith("performance:") else "")
        if note:
            ax.text(0.005, 0.98, note, transform=ax.transAxes, va="top", fontsize=8,
                    color="dimgray")
    axes[0, 0].set_title(f"{model}: drift points and reference means", loc="left")
    axes[-1, 0].set_xlabel("event (line of the events file)")
    from matplotlib.lines import Line2D

    axes[0, 0].legend(handles=[
        Line2D([], [], ls="", marker=".", color="tab:blue", alpha=0.5, label="value"),
        Line2D([], [], color="tab:blue", lw=1.0, label="rolling mean (50)"),
        Line2D([], [], color="darkorange", ls="--", lw=2.0, label="reference mean"),
        Line2D([], [], color="red", lw=1.5, label="drift detected")],
        loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncols=4, frameon=False)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=110)
    plt.close(fig)
    return image


def plot_error_rate(errors: list[tuple[int, float]], alerts: list[dict], image: Path, *,
                    title: str, marks: dict[int, str] | None = None, window: int = 100) -> Path:
    """A model's joined-label errors by prediction index (rolling mean of ``window``), with the
    drift points of its ``performance:error`` alerts (red) and other marks (e.g. a deploy)."""
    plt = pyplot()

    errors = sorted(errors)
    xs = [i for i, _ in errors]
    ys = [e for _, e in errors]
    fig, ax = plt.subplots(figsize=(11, 3.0))
    if len(ys) >= window:
        roll = [sum(ys[k - window:k]) / window for k in range(window, len(ys) + 1)]
        ax.plot(xs[window - 1:], roll, color="tab:blue", lw=1.2,
                label=f"error rate (rolling {window})")
    for a in alerts:
        idx = int(a["detected_at"]["event_id"].rsplit("-", 1)[1])
        ax.axvline(idx, color="red", lw=1.5)
        ax.annotate(f"{a['detector']['name']} ({a['model_version']})\n"
                    f"{a['evidence']['reference']['mean']:.2f} -> "
                    f"{a['evidence']['current']['mean']:.2f}",
                    (idx, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -4),
                    textcoords="offset points", va="top", fontsize=8, color="red")
    for idx, text in (marks or {}).items():
        ax.axvline(idx, color="gray", lw=1, ls="--")
        ax.annotate(text, (idx, 0.02), xycoords=("data", "axes fraction"), xytext=(4, 2),
                    textcoords="offset points", fontsize=8, color="gray")
    ax.set_ylim(0, max(0.6, max(ys, default=0.0)))
    ax.set_xlabel("prediction index")
    ax.set_ylabel("performance:error")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=110)
    plt.close(fig)
    return image
