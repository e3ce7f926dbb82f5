#!/usr/bin/env bash
# The test command: scripts/test.sh [pytest args...]
#
# Prepares .venv (scripts/venv.sh), starts a real Kafka and Redis (scripts/services.sh; running ones
# are reused, and KAFKA_BOOTSTRAP_SERVERS / REDIS_URL select external ones instead), exports their
# addresses, and runs `.venv/bin/python -m pytest "$@"` (default options come from pyproject.toml).
# Runs that may select the `security` tests (the full suite, -m security) also get a SASL_SSL
# Kafka and a TLS-only Redis (scripts/services-secure.sh; SM_SECURE_SERVICES=0/1 forces it).
# A full run (no arguments), `-m cluster` or tests/integration/test_cluster.py also get a local
# Redis Cluster (scripts/services-cluster.sh; REDIS_CLUSTER_URL).
# A full run, `-m registry` or tests/integration/test_registry*.py also get a local Schema Registry
# (Apicurio; scripts/services-registry.sh; SCHEMA_REGISTRY_URL).
# The lint and type gate (ruff, mypy with the pydantic plugin) runs as tests/lint, marker `lint`:
# part of every full run, alone with `-m lint`.
# On exit it stops only the services this run started. The exit status is pytest's; pytest's
# "no tests collected" (5) counts as a failure.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf 'test.sh: %s\n' "$*" >&2; }

bash scripts/venv.sh

# --- deploy tools (scripts/tools.sh): Helm, amtool and the KEDA / Prometheus Operator CRDs for the
# `deploy` tests, cached outside the repo; exported as SM_HELM, SM_AMTOOL, SM_KEDA_CRDS and
# SM_PROMETHEUS_OPERATOR_CRDS.
bash scripts/tools.sh
set -a
# shellcheck disable=SC1091
source "${SM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-monitor}/tools.env"
set +a
# --- end deploy tools

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
start_services
start_cluster_if_needed "$@"  # redis cluster: tests marked `cluster` (scripts/services-cluster.sh)
start_registry_if_needed "$@"  # schema registry: tests marked `registry` (scripts/services-registry.sh)
log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"
# Secure services for the `security` tests, only when this run may select them (scripts/lib.sh).
if wants_secure_services "$@"; then start_secure_services; fi

rc=0
.venv/bin/python -m pytest "$@" || rc=$?
case $rc in
    0) ;;
    5) log "FAILED: pytest collected no tests (exit 5); a test run that runs nothing is not a pass" ;;
    *) log "FAILED: pytest exited with status $rc" ;;
esac
exit "$rc"
