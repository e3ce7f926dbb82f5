"""Tools for the `deploy` tests: Helm, amtool, KEDA's CRDs and the Prometheus Operator's
ServiceMonitor CRD, from scripts/tools.sh (cached outside the repo). scripts/test.sh runs it and
exports SM_HELM, SM_AMTOOL, SM_KEDA_CRDS and SM_PROMETHEUS_OPERATOR_CRDS; run alone, pytest runs
it here. No Kubernetes cluster is needed."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Tools:
    helm: Path
    amtool: Path
    keda_crds: Path
    prometheus_operator_crds: Path


def _from_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="session")
def tools() -> Tools:
    names = ("SM_HELM", "SM_AMTOOL", "SM_KEDA_CRDS", "SM_PROMETHEUS_OPERATOR_CRDS")
    env = {k: os.environ[k] for k in names if os.environ.get(k)}
    if len(env) < len(names):
        cache = Path(os.environ.get("SM_TOOLS_CACHE") or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stream-monitor")
        env_file = cache / "tools.env"
        # Idempotent and fast when cached; the first run builds Helm (minutes).
        subprocess.run(["bash", str(ROOT / "scripts" / "tools.sh")], check=True)
        env = _from_env_file(env_file)
    t = Tools(*(Path(env[k]) for k in names))
    assert t.helm.is_file(), f"no helm at {t.helm}: run scripts/tools.sh"
    assert t.amtool.is_file(), f"no amtool at {t.amtool}: run scripts/tools.sh"
    assert (t.keda_crds / "keda.sh_scaledobjects.yaml").is_file(), \
        f"no KEDA CRDs in {t.keda_crds}: run scripts/tools.sh"
    assert (t.prometheus_operator_crds / "monitoring.coreos.com_servicemonitors.yaml").is_file()
    return t
