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

KAFKA_VERSION=4.1.1
KAFKA_PORT=${SM_KAFKA_PORT:-29092}
REDIS_PORT=${SM_REDIS_PORT:-26379}
for _p in "$KAFKA_PORT" "$REDIS_PORT" "${SM_KAFKA_CONTROLLER_PORT:-1}"; do
    [[ $_p =~ ^[0-9]+$ ]] || { echo "services: error: port '$_p' is not a number" >&2; exit 2; }
done
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

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

APT_UPDATED=0
# ensure_cmds cmd:package ... — install the packages of missing commands (root + apt only).
ensure_cmds() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing Debian packages: ${missing[*]} (install them: sudo apt-get install ${missing[*]})"
    fi
    log "installing Debian packages: ${missing[*]}…"
    if ((APT_UPDATED == 0)); then
        apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# proc_alive PID — the process exists and is not a zombie.
proc_alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}

# running_pid PIDFILE MARKER — print the pid if the pid file names a live process of ours.
running_pid() {
    local pid args
    [[ -s $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] && proc_alive "$pid" || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        args=$(tr '\0' ' ' <"/proc/$pid/cmdline") || return 1
    else
        args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 1
    fi
    [[ $args == *"$2"* ]] || return 1
    printf '%s\n' "$pid"
}

# port_open PORT — something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" >/dev/null 2>&1
}

# kafka_answers BOOTSTRAP — a real metadata request (kcat -L) lists at least one broker.
kafka_answers() {
    local out
    out=$(timeout 15 kcat -b "$1" -L -m 3 2>/dev/null) || return 1
    grep -Eq '^[[:space:]]*broker [0-9]+ at ' <<<"$out"
}

# redis_answers REDIS-CLI-ARGS... — PING returns PONG.
redis_answers() {
    local out
    out=$(timeout 5 redis-cli --no-auth-warning "$@" ping 2>/dev/null) || return 1
    [[ $out == PONG ]]
}

# kill_pid NAME PID GRACE — TERM, wait up to GRACE s, then KILL.
kill_pid() {
    local name=$1 pid=$2 grace=$3 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + grace))
    while proc_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) did not stop within ${grace}s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while proc_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
            proc_alive "$pid" && die "$name (pid $pid) survived SIGKILL"
            break
        fi
        sleep 0.2
    done
}

note_started() {
    if [[ -n ${SM_STARTED_FILE:-} ]]; then printf '%s\n' "$1" >>"$SM_STARTED_FILE"; fi
}

lock_run_dir() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    flock -w 300 9 || die "another services.sh holds $RUN_DIR/.lock"
}

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
log.dirs=$KAFKA_DIR/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
EOF
    cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
# Generated by scripts/services.sh. Kafka logs go to files in the run dir, not the console.
status = warn
# Keep logging while Kafka's own shutdown hook runs (lines are flushed immediately anyway).
shutdownHook = disable
appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

format_kafka_storage() {
    local cid
    [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
    if [[ -s $KAFKA_DIR/cluster.id ]]; then
        cid=$(<"$KAFKA_DIR/cluster.id")
    else
        cid=$(java -cp "$LIBS_DIR/*" kafka.tools.StorageTool random-uuid 2>"$KAFKA_DIR/logs/format.log") \
            || { cat "$KAFKA_DIR/logs/format.log" >&2; die "kafka.tools.StorageTool random-uuid failed"; }
        cid=${cid//[[:space:]]/}
        printf '%s\n' "$cid" >"$KAFKA_DIR/cluster.id"
    fi
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
    # setsid: own session, so a Ctrl-C meant for the caller does not hit the broker;
    # 8>&- 9>&-: do not inherit the lock fds (the lock would be held for the broker's lifetime).
    (
        cd "$KAFKA_DIR"
        exec setsid nohup java "${KAFKA_HEAP[@]}" -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
            -Dkafka.logs.dir="$KAFKA_DIR/logs" \
            -cp "$LIBS_DIR/*" kafka.Kafka "$KAFKA_PROPS" \
            </dev/null >"$KAFKA_DIR/logs/stdout.log" 2>&1 8>&- 9>&-
    ) &
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
            lock_run_dir
            for svc in "${services[@]}"; do "start_$svc"; done
            ;;
        stop)
            lock_run_dir
            for svc in "${services[@]}"; do
                case $svc in
                    kafka) stop_one kafka "$KAFKA_PIDFILE" "$KAFKA_MARKER" 60 "$EXT_KAFKA" ;;
                    redis) stop_one redis "$REDIS_PIDFILE" "$REDIS_MARKER" 10 "${EXT_REDIS:+REDIS_URL}" ;;
                esac
            done
            ;;
        clean)
            lock_run_dir
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
