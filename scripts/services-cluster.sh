#!/usr/bin/env bash
# A local Redis Cluster for the `cluster` tests and benchmark: 3 masters + 3 replicas of Debian's
# `redis-server` in cluster mode, made with `redis-cli --cluster create`. No Docker.
#
# Usage: scripts/services-cluster.sh {start|stop|status|env|clean}
#   start   start the nodes that are not running (a healthy running cluster is reused; a killed
#           node is restarted with its nodes.conf and rejoins, as a replica if it was failed
#           over), create the cluster if it was never created, and wait until it is healthy:
#           every node reports cluster_state:ok, 3 masters and 3 replicas are known, and every
#           replica has master_link_status:up (a replica that never finished its first sync
#           cannot be promoted, so failover tests need this)
#   stop    stop our nodes by pid file (only a pid whose command line is redis-server on our
#           port): TERM, wait, then KILL
#   status  one line per node; exit 0 only if the cluster is healthy
#   env     print `export REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:<first port>/0`
#   clean   stop, then delete the run dir (nodes.conf files, logs)
#
# Environment:
#   SM_REDIS_CLUSTER_PORT     first client port (29810); nodes use PORT..PORT+5, their cluster
#                             bus PORT+10..PORT+15 (the default bus port, PORT+10000, would be in
#                             the ephemeral range)
#   SM_REDIS_CLUSTER_RUN_DIR  configs, logs, pid files (<repo>/.local/run/redis-cluster)
#   SM_REDIS_CLUSTER_TIMEOUT  seconds to wait for a healthy cluster (60)
#   SM_STARTED_FILE           if set, `start` appends "redis-cluster" when it launched a node
#
# Progress goes to stderr; `env` and `status` write to stdout.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_NAME=services-cluster
# shellcheck source=scripts/services-lib.sh
source "$ROOT/scripts/services-lib.sh"
BASE=${SM_REDIS_CLUSTER_PORT:-29810}
check_ports "$BASE"
RUN_DIR=${SM_REDIS_CLUSTER_RUN_DIR:-$ROOT/.local/run/redis-cluster}
TIMEOUT=${SM_REDIS_CLUSTER_TIMEOUT:-60}
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done

# node_pid PORT — print the pid if the node's pid file names a live redis-server on PORT.
node_pid() { running_pid "$RUN_DIR/$1/redis.pid" redis-server ":$1"; }

cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

# field TEXT NAME — one field of INFO / CLUSTER INFO output (without the trailing \r).
field() { tr -d '\r' <<<"$1" | sed -n "s/^$2:\(.*\)$/\1/p"; }

write_conf() {
    local port=$1 d=$RUN_DIR/$1
    mkdir -p "$d"
    # No end-of-line comments in redis.conf: they are read as arguments.
    cat >"$d/redis.conf" <<EOF
port $port
cluster-port $((port + 10))
bind 127.0.0.1
dir $d
logfile $d/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 3000
save ""
appendonly no
daemonize no
repl-diskless-sync yes
repl-diskless-sync-delay 0
EOF
}

start_node() {
    local port=$1 d=$RUN_DIR/$1 pid
    if redis_answers -h 127.0.0.1 -p "$port"; then
        die "port $port answers but is not one of our nodes (pid file $d/redis.pid); stop it or set SM_REDIS_CLUSTER_PORT"
    fi
    write_conf "$port"
    (cd "$d" && exec setsid nohup redis-server "$d/redis.conf" </dev/null >/dev/null 2>&1 8>&- 9>&-) &
    pid=$!
    echo "$pid" >"$d/redis.pid"
    log "started node $port (pid $pid)"
}

# healthy — every node ok, 3 masters + 3 connected replicas, every replica's link up.
healthy() {
    local port info nodes role
    for port in "${PORTS[@]}"; do
        info=$(cli "$port" cluster info) || return 1
        [[ $(field "$info" cluster_state) == ok ]] || return 1
    done
    nodes=$(cli "${PORTS[0]}" cluster nodes) || return 1
    # Field 3 holds the flags, e.g. "myself,master" or "slave,fail?".
    awk '$3 ~ /fail|handshake|noaddr/ {bad = 1} $3 ~ /master/ {m++} $3 ~ /slave/ {s++}
         END {exit !(!bad && m == 3 && s == 3)}' <<<"$nodes" || return 1
    for port in "${PORTS[@]}"; do
        info=$(cli "$port" info replication) || return 1
        role=$(field "$info" role)
        if [[ $role == slave && $(field "$info" master_link_status) != up ]]; then return 1; fi
    done
}

created() {  # any node knows more than itself or holds slots
    local port info
    for port in "${PORTS[@]}"; do
        info=$(cli "$port" cluster info) || continue
        if [[ $(field "$info" cluster_known_nodes) -gt 1 || $(field "$info" cluster_slots_assigned) -gt 0 ]]; then
            return 0
        fi
    done
    return 1
}

start() {
    ensure_cmds redis-server:redis-server redis-cli:redis-tools
    lock_run_dir "$RUN_DIR"
    local port launched=0 deadline addrs=()
    if healthy; then
        for port in "${PORTS[@]}"; do node_pid "$port" >/dev/null || die "cluster on $BASE is healthy but node $port is not ours"; done
        log "redis cluster already running and healthy on 127.0.0.1:${PORTS[0]}-${PORTS[5]}"
        return 0
    fi
    for port in "${PORTS[@]}"; do
        node_pid "$port" >/dev/null && continue
        start_node "$port"
        launched=1
    done
    if ((launched)); then note_started redis-cluster; fi
    deadline=$((SECONDS + 20))
    for port in "${PORTS[@]}"; do
        until redis_answers -h 127.0.0.1 -p "$port"; do
            ((SECONDS < deadline)) || die "node $port does not answer; see $RUN_DIR/$port/redis.log"
            sleep 0.1
        done
    done
    if ! created; then
        for port in "${PORTS[@]}"; do addrs+=("127.0.0.1:$port"); done
        log "creating the cluster (3 masters, 3 replicas)…"
        redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$RUN_DIR/create.log" 2>&1 \
            || { cat "$RUN_DIR/create.log" >&2; die "redis-cli --cluster create failed"; }
    fi
    deadline=$((SECONDS + TIMEOUT))
    until healthy; do
        if ((SECONDS >= deadline)); then
            status >&2 || true
            die "the cluster is not healthy after ${TIMEOUT}s (a fresh start: $0 clean, then start)"
        fi
        sleep 0.2
    done
    log "redis cluster healthy on 127.0.0.1:${PORTS[0]}-${PORTS[5]} (bus ${PORTS[0]}+10..)"
}

stop() {
    lock_run_dir "$RUN_DIR"
    local port pid
    for port in "${PORTS[@]}"; do
        if ! pid=$(node_pid "$port"); then
            rm -f "$RUN_DIR/$port/redis.pid"
            continue
        fi
        kill_pid "node $port" "$pid" 10
        rm -f "$RUN_DIR/$port/redis.pid"
        log "stopped node $port (pid $pid)"
    done
}

status() {
    local port pid info role state
    for port in "${PORTS[@]}"; do
        if pid=$(node_pid "$port"); then
            info=$(cli "$port" info replication) || info=
            role=$(field "$info" role)
            state=$(field "$(cli "$port" cluster info || true)" cluster_state)
            echo "node $port: running (pid $pid), role ${role:-?}, cluster_state ${state:-?}"
        else
            echo "node $port: stopped"
        fi
    done
    if healthy; then echo "cluster: healthy"; else echo "cluster: NOT healthy"; return 3; fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) printf 'export REDIS_CLUSTER_URL=%q\n' "redis+cluster://127.0.0.1:${PORTS[0]}/0" ;;
    clean)
        stop
        [[ -n $RUN_DIR && $RUN_DIR != / ]] || die "refusing to delete '$RUN_DIR'"
        rm -rf -- "$RUN_DIR"
        log "removed $RUN_DIR"
        ;;
    *) echo "usage: $0 {start|stop|status|env|clean}" >&2; exit 2 ;;
esac
