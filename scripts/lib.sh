# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run).
#
# start_services: starts the local Kafka and Redis (scripts/services.sh; running or external ones
# are reused), exports their addresses, and arranges for the services *this* run started to be
# stopped when the calling script exits, keeping the script's exit status.

# shellcheck disable=SC2317  # _sm_cleanup is run by the EXIT trap
_sm_cleanup() {
    local rc=$? svcs=()
    trap - EXIT INT TERM HUP
    mapfile -t svcs < <(sort -u "$SM_STARTED" | grep -vx redis-cluster)
    # >>> redis cluster (scripts/services-cluster.sh)
    if grep -qx redis-cluster "$SM_STARTED"; then
        bash scripts/services-cluster.sh stop || rc=$((rc ? rc : 1))
    fi
    # <<< redis cluster
    if ((${#svcs[@]})); then
        bash scripts/services.sh stop "${svcs[@]}" || rc=$((rc ? rc : 1))
    fi
    rm -f "$SM_STARTED"
    exit "$rc"
}

start_services() {
    SM_STARTED=$(mktemp "${TMPDIR:-/tmp}/sm-started.XXXXXX")
    trap _sm_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    SM_STARTED_FILE=$SM_STARTED bash scripts/services.sh start
    eval "$(bash scripts/services.sh env)"
    export KAFKA_BOOTSTRAP_SERVERS REDIS_URL
}

# >>> redis cluster (scripts/services-cluster.sh) ------------------------------------------------
# start_cluster_if_needed PYTEST-ARGS... — for a full run (no arguments: CI) or a run whose -m
# expression names `cluster` (and not as `not cluster`), or that names test_cluster.py, start the local Redis Cluster (a running
# healthy one is reused; REDIS_CLUSTER_URL set beforehand selects an external one) and export
# REDIS_CLUSTER_URL. Call after start_services (it records what it started in the same file).
start_cluster_if_needed() {
    local want=$(($# == 0)) prev= a
    for a in "$@"; do
        if [[ $prev == -m && $a == *cluster* && $a != *"not cluster"* ]]; then want=1; fi
        if [[ $a == *test_cluster.py* ]]; then want=1; fi
        prev=$a
    done
    ((want)) || return 0
    if [[ -z ${REDIS_CLUSTER_URL:-} ]]; then
        SM_STARTED_FILE=$SM_STARTED bash scripts/services-cluster.sh start
        eval "$(bash scripts/services-cluster.sh env)"
    fi
    export REDIS_CLUSTER_URL
}
# <<< redis cluster --------------------------------------------------------------------------------
