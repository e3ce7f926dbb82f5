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
    mapfile -t svcs < <(sort -u "$SM_STARTED" | grep -vx -e redis-cluster -e registry)
    # >>> redis cluster (scripts/services-cluster.sh)
    if grep -qx redis-cluster "$SM_STARTED"; then
        bash scripts/services-cluster.sh stop || rc=$((rc ? rc : 1))
    fi
    # <<< redis cluster
    if grep -qx registry "$SM_STARTED"; then
        bash scripts/services-registry.sh stop || rc=$((rc ? rc : 1))
    fi
    if ((${#svcs[@]})); then
        bash scripts/services.sh stop "${svcs[@]}" || rc=$((rc ? rc : 1))
    fi
    rm -f "$SM_STARTED"
    _sm_stop_secure_services || rc=$((rc ? rc : 1))
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

# ---- secure services (SASL_SSL Kafka, TLS + ACL Redis: scripts/services-secure.sh) ----------
# wants_secure_services PYTEST-ARGS...: true when the run may select the `security` tests: the
# full suite (no paths), or paths that hold them, and no -m expression that leaves them out.
# SM_SECURE_SERVICES=1 / =0 forces the answer.
wants_secure_services() {
    case ${SM_SECURE_SERVICES:-} in 1) return 0 ;; 0) return 1 ;; esac
    local a p prev="" expr="" paths=0 hit=0
    for a in "$@"; do
        if [[ $prev == -m ]]; then expr=$a; prev=""; continue; fi
        prev=""
        case $a in
            -m) prev=-m ;;
            -m?*) expr=${a#-m} ;;
            -*) ;;
            *)
                p=${a%%::*}
                [[ -e $p ]] || continue
                paths=1
                if [[ $p == *test_security.py ]] || { [[ -d $p ]] \
                    && [[ -n $(find "$p" -name 'test_security.py' -print -quit) ]]; }; then
                    hit=1
                fi
                ;;
        esac
    done
    ((paths == 0 || hit == 1)) || return 1
    [[ -z $expr || $expr == *security* || $expr == *integration* || $expr == *not* ]]
}

start_secure_services() {
    SM_SECURE_STARTED=$(mktemp "${TMPDIR:-/tmp}/sm-secure-started.XXXXXX")
    SM_STARTED_FILE=$SM_SECURE_STARTED bash scripts/services-secure.sh start
    eval "$(bash scripts/services-secure.sh env)"
}

# shellcheck disable=SC2317  # run from _sm_cleanup
_sm_stop_secure_services() {
    [[ -n ${SM_SECURE_STARTED:-} ]] || return 0
    local rc=0
    if [[ -s $SM_SECURE_STARTED ]]; then bash scripts/services-secure.sh stop || rc=1; fi
    rm -f "$SM_SECURE_STARTED"
    return "$rc"
}
# ---- end secure services --------------------------------------------------------------------
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
# >>> schema registry (scripts/services-registry.sh) ---------------------------------------------
# start_registry_if_needed PYTEST-ARGS... — for a full run (no arguments: CI), a -m expression
# that names `registry` (not as `not registry`), or a path naming test_registry, start the local
# Apicurio Registry (a running one of ours is reused; SCHEMA_REGISTRY_URL set beforehand selects
# an external one) and export SCHEMA_REGISTRY_URL. Call after start_services (it records what it
# started in the same file, and _sm_cleanup stops it).
start_registry_if_needed() {
    local want=$(($# == 0)) prev= a
    for a in "$@"; do
        if [[ $prev == -m && $a == *registry* && $a != *"not registry"* ]]; then want=1; fi
        if [[ $a == *test_registry* ]]; then want=1; fi
        prev=$a
    done
    ((want)) || return 0
    if [[ -z ${SCHEMA_REGISTRY_URL:-} ]]; then
        SM_STARTED_FILE=$SM_STARTED bash scripts/services-registry.sh start
        eval "$(bash scripts/services-registry.sh env)"
    fi
    export SCHEMA_REGISTRY_URL
}
# <<< schema registry --------------------------------------------------------------------------
