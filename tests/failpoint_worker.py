"""The worker command with the crash-safety tests' failpoints: ``python tests/failpoint_worker.py
--config <file>`` runs ``stream-monitor worker --config <file>`` with the failpoint that
``SM_FAILPOINT`` names (tests/failpoints.py) handed to the worker. Tests start it instead of the
command when they give SM_FAILPOINT (tests/helpers.py, ``worker_command``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` as a package

import typer

from stream_monitor.cli import run_worker
from tests.failpoints import Failpoints


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--config":
        print("usage: failpoint_worker.py --config <file>", file=sys.stderr)
        return 2
    spec = os.environ.get("SM_FAILPOINT")
    try:
        hooks = Failpoints.parse(spec) if spec else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        run_worker(Path(argv[1]), hooks)
    except typer.Exit as e:
        return int(e.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
