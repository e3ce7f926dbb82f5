"""What every part shares: paths, targets, the stop flag, the consoles, the machine, the
formatting of rates."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console

BENCH = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = BENCH.parent
CONFIG = ROOT / "examples" / "monitor.yaml"
# The config the single-partition run measures (use_config): the example's, or a variant.
_config = {"path": CONFIG, "detectors": "adwin+page_hinkley"}
MODELS = ("credit-a", "credit-b", "credit-c", "credit-d")
N_FEATURES = 10
TARGET_RATE = 40_000.0  # issue 20
TARGET_RATIO = 0.70  # of the no-op Faust agent (kept as a reference row)
TARGET_CORE_RATIO = 0.90  # issue 20: of the core's own CPU-only rate on the same events
START_FRACTION = 0.10  # the timed window starts when 10% of the events are done


def use_config(detectors: str, work_dir: Path) -> None:
    """Measure with the example config (``adwin+page_hinkley``: its credit-* rule's detectors)
    or with ``cusum``: the same config with the calibrated default ``cusum`` in place of the
    credit-* rule's detectors on every signal (written to ``work_dir``)."""
    if detectors == "adwin+page_hinkley":
        _config.update(path=CONFIG, detectors=detectors)
        return
    import yaml

    doc = yaml.safe_load(CONFIG.read_text())
    for rule in doc["models"]:
        if rule["match"] == "credit-*":
            for sig in rule["signals"]:
                sig["detectors"] = ["cusum"]
    path = work_dir / "monitor-cusum.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _config.update(path=path, detectors=detectors)


def config_path() -> Path:
    return Path(_config["path"])


def config_detectors() -> list[str]:
    return str(_config["detectors"]).split("+")


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop the subprocess being measured, delete the topics, exit 130."""


_stop_signal: int | None = None


def check_stop() -> None:
    # Checked in every wait loop, so an interrupt is honoured even if a library swallowed the
    # task cancellation that the signal handler also requests.
    if _stop_signal is not None:
        raise Interrupted(signal.Signals(_stop_signal).name)


# Results go to stdout, progress and status lines to stderr; wide enough for the tables in logs.
out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)




def machine_info() -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = len(os.sched_getaffinity(0))
    versions: dict[str, str | None] = {}
    for dist in ("stream-monitor", "faust-streaming", "aiokafka", "river", "redis", "orjson"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        git["dirty"] = bool(status.strip())
    return {
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "loadavg_at_start": list(os.getloadavg()),
        "versions": versions,
        "git": git,
    }


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit(
            (
                parts.scheme,
                f"{parts.username or ''}:***@{host}",
                parts.path,
                parts.query,
                parts.fragment,
            )
        )
    return url




def stats(values: list[float | None]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}  ({x:.0%})"


def install_signal_handlers() -> None:
    """SIGINT / SIGTERM: cancel the main task once, so that its finally blocks stop the
    processes it started and delete what it created."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        global _stop_signal
        if _stop_signal is not None:
            return  # once: a second cancel could interrupt the clean-up itself
        err.print(f"[yellow]{signal.Signals(signum).name}: stopping...[/yellow]")
        _stop_signal = signum
        if main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


def window_note(window: dict[str, Any]) -> str:
    """The measured window of a run, as printed after its rate."""
    return (f" (offsets {window['from_offset']}->{window['to_offset']} in "
            f"{window['seconds']:.2f} s, +-{window['timing_uncertainty_s']:.2f} s)")
