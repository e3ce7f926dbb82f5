#!/usr/bin/env bash
# The demo command: scripts/demo.sh [stream-monitor demo args...]
#
# Prepares .venv, starts a real Kafka and Redis (scripts/services.sh; running or external ones are
# reused), exports their addresses and runs `.venv/bin/stream-monitor demo "$@"`: it starts the
# worker, feeds a drifting stream and prints the alerts read back from Kafka.
# The services this run started are stopped at exit, unless SM_KEEP_SERVICES=1 (then stop them
# later with `scripts/services.sh stop`).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf 'demo.sh: %s\n' "$*" >&2; }

bash scripts/venv.sh
[[ -x .venv/bin/stream-monitor ]] \
    || { log "error: .venv/bin/stream-monitor is missing (see [project.scripts] in pyproject.toml)"; exit 1; }

if [[ ${SM_KEEP_SERVICES:-0} == 1 ]]; then
    bash scripts/services.sh start
    eval "$(bash scripts/services.sh env)"
    log "SM_KEEP_SERVICES=1: services stay up afterwards; stop them with: scripts/services.sh stop"
    exec .venv/bin/stream-monitor demo "$@"
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
start_services

rc=0
.venv/bin/stream-monitor demo "$@" || rc=$?
exit "$rc"
