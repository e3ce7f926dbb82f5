"""The exceptions and the notifier load no numeric library (docs/architecture.md "Layers").

``import stream_monitor.errors`` used to load River, numpy and scipy (seconds), because the
package root imported the config and the core, and the core's catalogue had to be registered
into the config before any config was parsed. The notifier paid the same. Each import runs in a
fresh interpreter, so nothing this test process loaded before counts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("river", "numpy", "scipy")

# What `stream-monitor notify` imports on its way to forwarding alerts (cli.py ``notify``).
NOTIFIER = ("stream_monitor.cli", "stream_monitor.notify", "stream_monitor.notify.config",
            "stream_monitor.notify.service", "stream_monitor.observability.logging",
            "stream_monitor.adapters.kafka_clients", "stream_monitor.state.connection")


def loaded_after(modules: tuple[str, ...]) -> list[str]:
    """The heavy libraries in ``sys.modules`` after importing ``modules`` in a new process."""
    code = ("import importlib, sys\n"
            f"for m in {list(modules)!r}:\n"
            "    importlib.import_module(m)\n"
            f"print(','.join(h for h in {list(HEAVY)!r} if h in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    return out.split(",") if out else []


@pytest.mark.parametrize("modules", [("stream_monitor.errors",), ("stream_monitor",),
                                     ("stream_monitor.settings",), NOTIFIER],
                         ids=["errors", "package", "settings", "notifier"])
def test_light_modules_load_no_numeric_library(modules: tuple[str, ...]) -> None:
    assert loaded_after(modules) == []


def test_the_check_sees_a_heavy_import() -> None:
    assert loaded_after(("stream_monitor.core.detectors",)) == list(HEAVY)
    assert loaded_after(("stream_monitor.config",)) == list(HEAVY)


def test_the_package_root_still_gives_its_names() -> None:
    import stream_monitor

    assert stream_monitor.Monitor.__name__ == "Monitor"
    assert stream_monitor.MonitorPlan.__name__ == "MonitorPlan"
    assert stream_monitor.load_config.__module__ == "stream_monitor.config"
    with pytest.raises(AttributeError):
        stream_monitor.nothing_here  # noqa: B018
