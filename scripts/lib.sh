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
    mapfile -t svcs < <(sort -u "$SM_STARTED")
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
