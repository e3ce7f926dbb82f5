#!/usr/bin/env bash
# Real local services for stream-monitor, without Docker:
#   - Apache Kafka 4.1.1, one KRaft node in combined broker+controller mode, run with `java` from
#     Maven Central jars (deploy/local-kafka/pom.xml), cached outside the repo;
#   - Redis, Debian's `redis-server`.
#
# Usage: scripts/services.sh {start|stop|status|env|clean} [kafka] [redis]
#   start   start what is not running yet (a running, answering one is reused), wait until ready
#   stop    stop what `start` started, by pid file (TERM, wait, then KILL); no-op if nothing runs
#   status  print the state of each service; exit 0 only if all answer
#   env     print `export ...` lines:  eval "$(scripts/services.sh env)"
#   clean   stop, then delete the run dir (Kafka and Redis data, logs); the jar cache stays
#   jars    make sure Java and the cached Kafka jars are there; print the jar directory
#           (scripts/services-secure.sh starts its own broker from the same cache)
#
# Environment:
#   SM_KAFKA_PORT (29092), SM_KAFKA_CONTROLLER_PORT (SM_KAFKA_PORT+1), SM_REDIS_PORT (26379)
#   (below the ephemeral range 32768-60999: a client retrying a stopped broker on an ephemeral
#   port can connect to itself and hold the port, so the broker cannot bind it again)
#   SM_RUN_DIR               run state: configs, data, logs, pid files (<repo>/.local/run)
#   SM_KAFKA_START_TIMEOUT   seconds to wait for the broker to answer (60)
#   SM_REDIS_START_TIMEOUT   seconds to wait for Redis to answer (20)
#   SM_KAFKA_HEAP_OPTS       JVM heap flags ("-Xms256m -Xmx512m")
#   SM_EXTERNAL_TIMEOUT      seconds to wait for an external Kafka/Redis to answer (30)
#   KAFKA_BOOTSTRAP_SERVERS  if set (to anything but this script's own address), Kafka is external:
#                            it is only checked, never started or stopped. Same for REDIS_URL.
#   SM_STARTED_FILE          if set, `start` appends the name of each service it launched
#                            (scripts/test.sh and scripts/demo.sh use it to stop only those).
#
# Progress goes to stderr; `env` and `status` write to stdout.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_NAME=services
# shellcheck source=scripts/services-lib.sh
source "$ROOT/scripts/services-lib.sh"

KAFKA_VERSION=4.1.1
KAFKA_PORT=${SM_KAFKA_PORT:-29092}
REDIS_PORT=${SM_REDIS_PORT:-26379}
check_ports "$KAFKA_PORT" "$REDIS_PORT" "${SM_KAFKA_CONTROLLER_PORT:-1}"
KAFKA_CTRL_PORT=${SM_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
# A second plaintext listener that advertises the port of a test-side proxy (KAFKA_PORT+3): a
# client bootstrapped through the proxy sends all its traffic through it, so a test can hold
# one client's requests (a hung broker, for that client only) while the broker serves others.
KAFKA_PROXIED_PORT=$((KAFKA_PORT + 2))
KAFKA_PROXY_PORT=$((KAFKA_PORT + 3))
KAFKA_TIMEOUT=${SM_KAFKA_START_TIMEOUT:-60}
REDIS_TIMEOUT=${SM_REDIS_START_TIMEOUT:-20}
EXTERNAL_TIMEOUT=${SM_EXTERNAL_TIMEOUT:-30}
read -r -a KAFKA_HEAP <<<"${SM_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

RUN_DIR=${SM_RUN_DIR:-$ROOT/.local/run}
KAFKA_DIR=$RUN_DIR/kafka
REDIS_DIR=$RUN_DIR/redis
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
REDIS_PIDFILE=$REDIS_DIR/redis.pid
KAFKA_PROPS=$KAFKA_DIR/server.properties
# What identifies our processes in `ps` (guards against a stale pid file whose pid was reused).
KAFKA_MARKER=$KAFKA_PROPS
REDIS_MARKER=redis-server

CACHE_DIR=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/stream-monitor/kafka-$KAFKA_VERSION
LIBS_DIR=$CACHE_DIR/libs
LIBS_STAMP=$CACHE_DIR/libs.complete
POM=$ROOT/deploy/local-kafka/pom.xml

OWN_KAFKA=127.0.0.1:$KAFKA_PORT
OWN_REDIS=redis://127.0.0.1:$REDIS_PORT/0
# An address equal to our own (e.g. after `eval "$(services.sh env)"`) is not "external".
EXT_KAFKA=${KAFKA_BOOTSTRAP_SERVERS:-}
[[ $EXT_KAFKA == "$OWN_KAFKA" ]] && EXT_KAFKA=
EXT_REDIS=${REDIS_URL:-}
[[ $EXT_REDIS == "$OWN_REDIS" ]] && EXT_REDIS=

# ---------------------------------------------------------------- kafka

ensure_java() {
    ensure_cmds java:openjdk-17-jre-headless
    local v major
    v=$(java -version 2>&1) || die "java -version failed: $v"
    major=$(sed -nE '1s/.*version "([0-9]+)[."].*/\1/p' <<<"$v")
    [[ -n $major && $major -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, found: ${v%%$'\n'*}"
}

ensure_kafka_jars() {
    local want
    want=$(sha256sum "$POM" | cut -d' ' -f1)
    mkdir -p "$CACHE_DIR"
    exec 8>"$CACHE_DIR/.lock"
    flock -w 600 8 || die "another process holds $CACHE_DIR/.lock"
    if [[ -f $LIBS_STAMP && $(<"$LIBS_STAMP") == "$want" ]] \
        && compgen -G "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
        exec 8>&-
        return 0
    fi
    ensure_cmds mvn:maven
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central (first run only)…"
    rm -rf "$LIBS_DIR" "$LIBS_STAMP"
    if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" >"$CACHE_DIR/mvn.log" 2>&1; then
        tail -n 40 "$CACHE_DIR/mvn.log" >&2
        die "could not fetch the Kafka jars with Maven (full log: $CACHE_DIR/mvn.log)"
    fi
    compgen -G "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null \
        || die "Maven finished but $LIBS_DIR has no kafka_2.13-$KAFKA_VERSION.jar"
    printf '%s\n' "$want" >"$LIBS_STAMP"
    log "cached $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $LIBS_DIR"
    exec 8>&-
}

write_kafka_config() {
    mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
    cat >"$KAFKA_PROPS" <<EOF
# Generated by scripts/services.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT,PROXIED://127.0.0.1:$KAFKA_PROXIED_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,PROXIED://127.0.0.1:$KAFKA_PROXY_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT
EOF
    kafka_single_node_props "$KAFKA_DIR/data" >>"$KAFKA_PROPS"
    write_kafka_log4j "$KAFKA_DIR"
}

format_kafka_storage() {
    local cid
    [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
    cid=$(kafka_cluster_id "$KAFKA_DIR" "$LIBS_DIR")
    java -cp "$LIBS_DIR/*" kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_PROPS" --ignore-formatted \
        >"$KAFKA_DIR/logs/format.log" 2>&1 \
        || { cat "$KAFKA_DIR/logs/format.log" >&2; die "formatting $KAFKA_DIR/data failed"; }
}

kafka_log_tail() {
    local f
    for f in "$KAFKA_DIR/logs/stdout.log" "$KAFKA_DIR/logs/server.log"; do
        [[ -s $f ]] || continue
        printf -- '---- last lines of %s ----\n' "$f" >&2
        tail -n 30 "$f" >&2
    done
}

# wait_kafka PID — poll with a real client until the broker answers.
wait_kafka() {
    local pid=$1 deadline=$((SECONDS + KAFKA_TIMEOUT))
    until kafka_answers "$OWN_KAFKA"; do
        if ! proc_alive "$pid"; then
            kafka_log_tail
            rm -f "$KAFKA_PIDFILE"
            die "kafka (pid $pid) exited during startup; see $KAFKA_DIR/logs"
        fi
        if ((SECONDS >= deadline)); then
            kafka_log_tail
            return 1
        fi
        sleep 0.5
    done
}

start_kafka() {
    local pid
    ensure_cmds kcat:kcat
    if [[ -n $EXT_KAFKA ]]; then
        log "KAFKA_BOOTSTRAP_SERVERS=$EXT_KAFKA is set: using that Kafka, not starting one"
        local deadline=$((SECONDS + EXTERNAL_TIMEOUT))
        until kafka_answers "$EXT_KAFKA"; do
            ((SECONDS < deadline)) || die "external Kafka at $EXT_KAFKA does not answer (kcat -L) after ${EXTERNAL_TIMEOUT}s"
            sleep 1
        done
        log "kafka (external) ready on $EXT_KAFKA"
        return 0
    fi
    if pid=$(running_pid "$KAFKA_PIDFILE" "$KAFKA_MARKER"); then
        wait_kafka "$pid" || die "kafka runs (pid $pid) but does not answer on $OWN_KAFKA (other ports? run '$0 stop' first)"
        log "kafka already running (pid $pid), ready on $OWN_KAFKA"
        return 0
    fi
    rm -f "$KAFKA_PIDFILE"
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CTRL_PORT" "$KAFKA_PROXIED_PORT"; do
        port_open "$p" && die "port $p is already in use by another process (see: ss -ltnp 'sport = :$p'); set SM_KAFKA_PORT / SM_KAFKA_CONTROLLER_PORT"
    done
    ensure_java
    ensure_kafka_jars
    write_kafka_config
    format_kafka_storage
    # Fresh log files per start, so failure output shows this run only (the previous run's stay as *.prev).
    local f
    for f in server.log stdout.log; do
        if [[ -f $KAFKA_DIR/logs/$f ]]; then mv -f "$KAFKA_DIR/logs/$f" "$KAFKA_DIR/logs/$f.prev"; fi
    done
    log "starting kafka $KAFKA_VERSION (KRaft) on $OWN_KAFKA, controller 127.0.0.1:$KAFKA_CTRL_PORT…"
    launch_kafka "$KAFKA_DIR" "$LIBS_DIR" "$KAFKA_PROPS" "${KAFKA_HEAP[@]}" -XX:+ExplicitGCInvokesConcurrent
    pid=$!
    printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
    note_started kafka
    if ! wait_kafka "$pid"; then
        kill_pid kafka "$pid" 10
        rm -f "$KAFKA_PIDFILE"
        die "kafka did not answer on $OWN_KAFKA within ${KAFKA_TIMEOUT}s (logs: $KAFKA_DIR/logs)"
    fi
    log "kafka ready on $OWN_KAFKA (pid $pid, logs in $KAFKA_DIR/logs)"
}

# ---------------------------------------------------------------- redis

wait_redis() {
    local pid=$1 deadline=$((SECONDS + REDIS_TIMEOUT))
    until redis_answers -h 127.0.0.1 -p "$REDIS_PORT"; do
        if ! proc_alive "$pid"; then
            tail -n 30 "$REDIS_DIR/redis.log" >&2 || true
            rm -f "$REDIS_PIDFILE"
            die "redis (pid $pid) exited during startup; see $REDIS_DIR/redis.log"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$REDIS_DIR/redis.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

start_redis() {
    local pid
    if [[ -n $EXT_REDIS ]]; then
        ensure_cmds redis-cli:redis-tools
        log "REDIS_URL is set: using that Redis, not starting one"
        local deadline=$((SECONDS + EXTERNAL_TIMEOUT))
        until redis_answers -u "$EXT_REDIS"; do
            ((SECONDS < deadline)) || die "external Redis at REDIS_URL does not answer PING after ${EXTERNAL_TIMEOUT}s"
            sleep 1
        done
        log "redis (external) ready"
        return 0
    fi
    ensure_cmds redis-server:redis-server redis-cli:redis-tools
    if pid=$(running_pid "$REDIS_PIDFILE" "$REDIS_MARKER"); then
        wait_redis "$pid" || die "redis runs (pid $pid) but does not answer on port $REDIS_PORT (other port? run '$0 stop' first)"
        log "redis already running (pid $pid), ready on $OWN_REDIS"
        return 0
    fi
    rm -f "$REDIS_PIDFILE"
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is already in use by another process (see: ss -ltnp 'sport = :$REDIS_PORT'); set SM_REDIS_PORT"
    mkdir -p "$REDIS_DIR"
    if [[ -f $REDIS_DIR/redis.log ]]; then mv -f "$REDIS_DIR/redis.log" "$REDIS_DIR/redis.log.prev"; fi
    log "starting redis on 127.0.0.1:$REDIS_PORT…"
    (
        cd "$REDIS_DIR"
        exec setsid nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
            --save '' --appendonly no --daemonize no \
            </dev/null >"$REDIS_DIR/redis.log" 2>&1 8>&- 9>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$REDIS_PIDFILE"
    note_started redis
    if ! wait_redis "$pid"; then
        kill_pid redis "$pid" 5
        rm -f "$REDIS_PIDFILE"
        die "redis did not answer on port $REDIS_PORT within ${REDIS_TIMEOUT}s"
    fi
    log "redis ready on $OWN_REDIS (pid $pid)"
}

# ---------------------------------------------------------------- stop / status / env

stop_one() {
    local name=$1 pidfile=$2 marker=$3 grace=$4 external=$5 pid
    if ! pid=$(running_pid "$pidfile" "$marker"); then
        rm -f "$pidfile"
        if [[ -n $external ]]; then log "$name: external ($external), left alone"
        else log "$name: not running"; fi
        return 0
    fi
    log "stopping $name (pid $pid)…"
    kill_pid "$name" "$pid" "$grace"
    rm -f "$pidfile"
    log "$name stopped"
}

status() {
    local rc=0 pid
    if [[ -n $EXT_KAFKA ]]; then
        if kafka_answers "$EXT_KAFKA"; then echo "kafka: external, answering on $EXT_KAFKA"
        else echo "kafka: external, NOT answering on $EXT_KAFKA"; rc=3; fi
    elif pid=$(running_pid "$KAFKA_PIDFILE" "$KAFKA_MARKER"); then
        if kafka_answers "$OWN_KAFKA"; then echo "kafka: running (pid $pid), answering on $OWN_KAFKA"
        else echo "kafka: running (pid $pid), NOT answering on $OWN_KAFKA"; rc=3; fi
    else
        echo "kafka: stopped"; rc=3
    fi
    if [[ -n $EXT_REDIS ]]; then
        if redis_answers -u "$EXT_REDIS"; then echo "redis: external, answering"
        else echo "redis: external, NOT answering"; rc=3; fi
    elif pid=$(running_pid "$REDIS_PIDFILE" "$REDIS_MARKER"); then
        if redis_answers -h 127.0.0.1 -p "$REDIS_PORT"; then echo "redis: running (pid $pid), answering on $OWN_REDIS"
        else echo "redis: running (pid $pid), NOT answering on $OWN_REDIS"; rc=3; fi
    else
        echo "redis: stopped"; rc=3
    fi
    return "$rc"
}

print_env() {
    printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "${EXT_KAFKA:-$OWN_KAFKA}"
    printf 'export REDIS_URL=%q\n' "${EXT_REDIS:-$OWN_REDIS}"
    if [[ -z $EXT_KAFKA ]]; then
        printf 'export SM_TEST_KAFKA_PROXIED=%q\n' "127.0.0.1:$KAFKA_PROXIED_PORT"
        printf 'export SM_TEST_KAFKA_PROXY_PORT=%q\n' "$KAFKA_PROXY_PORT"
    fi
}

usage() {
    echo "usage: $0 {start|stop|status|env|clean|jars} [kafka] [redis]" >&2
    exit 2
}

main() {
    (($# >= 1)) || usage
    local cmd=$1 svc
    shift
    local services=("$@")
    ((${#services[@]})) || services=(kafka redis)
    for svc in "${services[@]}"; do
        [[ $svc == kafka || $svc == redis ]] || usage
    done
    case $cmd in
        start)
            lock_run_dir "$RUN_DIR"
            for svc in "${services[@]}"; do "start_$svc"; done
            ;;
        stop)
            lock_run_dir "$RUN_DIR"
            for svc in "${services[@]}"; do
                case $svc in
                    kafka) stop_one kafka "$KAFKA_PIDFILE" "$KAFKA_MARKER" 60 "$EXT_KAFKA" ;;
                    redis) stop_one redis "$REDIS_PIDFILE" "$REDIS_MARKER" 10 "${EXT_REDIS:+REDIS_URL}" ;;
                esac
            done
            ;;
        clean)
            lock_run_dir "$RUN_DIR"
            stop_one kafka "$KAFKA_PIDFILE" "$KAFKA_MARKER" 60 "$EXT_KAFKA"
            stop_one redis "$REDIS_PIDFILE" "$REDIS_MARKER" 10 "${EXT_REDIS:+REDIS_URL}"
            [[ -n $RUN_DIR && $RUN_DIR != / ]] || die "refusing to delete run dir '$RUN_DIR'"
            rm -rf -- "$KAFKA_DIR" "$REDIS_DIR" "$RUN_DIR/.lock"
            rmdir -- "$RUN_DIR" 2>/dev/null || true
            log "removed $RUN_DIR"
            ;;
        status) status ;;
        env) print_env ;;
        jars) ensure_java; ensure_kafka_jars; printf '%s\n' "$LIBS_DIR" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
