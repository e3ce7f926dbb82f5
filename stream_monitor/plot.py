"""Plot signals with their drift points: what a person looks at to judge an alert."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson

__all__ = ["plot_error_rate", "plot_signals"]


def _value(ev: dict, signal: str) -> float | None:
    v = ev.get("prediction") if signal == "prediction" else ev.get("features", {}).get(
        signal.removeprefix("feature:"))
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def plot_signals(events_path: Path, outputs_path: Path, image: Path, model: str | None = None,
                 extra_signals: int = 1) -> Path:
    """One panel per alerted signal (plus ``extra_signals`` quiet ones for contrast): the raw
    values by offset, a rolling mean, the reference mean, and a red line at each drift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alerts = [r for r in map(orjson.loads, outputs_path.read_bytes().splitlines())
              if r.get("type") == "drift_alert"]
    events: list[tuple[int, dict]] = []
    for i, line in enumerate(events_path.read_bytes().splitlines()):
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(ev, dict) and "model_id" in ev:
            events.append((i, ev))
    if model is None:
        model = alerts[0]["model_id"] if alerts else (events[0][1]["model_id"] if events else "")
    events = [(i, e) for i, e in events if e.get("model_id") == model]
    by_signal: dict[str, list[dict]] = defaultdict(list)
    for a in alerts:
        if a["model_id"] == model:
            by_signal[a["signal"]].append(a)
    signals = list(by_signal)
    if events:
        quiet = ["feature:" + f for f in events[0][1].get("features", {})
                 if "feature:" + f not in by_signal]
        signals += quiet[:extra_signals]
    if not signals:
        signals = ["prediction"]
    fig, axes = plt.subplots(len(signals), 1, figsize=(11, 2.6 * len(signals)), sharex=True,
                             squeeze=False)
    for ax, signal in zip(axes[:, 0], signals, strict=True):
        pts = [(i, v) for i, e in events if (v := _value(e, signal)) is not None]
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        ax.plot(xs, ys, ".", ms=1.5, alpha=0.35, color="tab:blue", label="value")
        if len(ys) >= 50:
            w = 50
            roll = [sum(ys[k - w:k]) / w for k in range(w, len(ys) + 1)]
            ax.plot(xs[w - 1:], roll, color="tab:blue", lw=1.2, label="rolling mean (50)")
        for a in by_signal.get(signal, []):
            off = a["detected_at"]["offset"]
            ax.axvline(off, color="red", lw=1.5)
            ref = a["evidence"]["reference"]
            ax.hlines(ref["mean"], xs[0] if xs else 0, off, colors="gray", linestyles="--", lw=1)
            ax.annotate(f"{a['detector']['name']} @ {off}\nshift "
                        f"{a['evidence']['mean_shift_in_reference_std']:+.2f} sd",
                        (off, ax.get_ylim()[1]), xytext=(4, -4), textcoords="offset points",
                        va="top", fontsize=8, color="red")
        ax.set_ylabel(signal, fontsize=9)
        if not by_signal.get(signal):
            ax.set_title(f"{signal}: no drift detected", fontsize=9, loc="left")
    axes[0, 0].set_title(f"{model}: signals with drift points (red) and reference mean (dashed)",
                         loc="left")
    axes[-1, 0].set_xlabel("offset")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=110)
    plt.close(fig)
    return image


def plot_error_rate(errors: list[tuple[int, float]], alerts: list[dict], image: Path, *,
                    title: str, marks: dict[int, str] | None = None, window: int = 100) -> Path:
    """A model's joined-label errors by prediction index (rolling mean of ``window``), with the
    drift points of its ``performance:error`` alerts (red) and other marks (e.g. a deploy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
