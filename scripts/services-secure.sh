#!/usr/bin/env bash
# Secure local services for the `security` tests (docs/security.md), without Docker:
#   - a CA and a server certificate made with openssl at run time (SAN localhost, 127.0.0.1),
#     plus a second, unrelated CA for the "unknown CA" tests;
#   - Kafka 4.1.1, one KRaft node with a SASL_SSL listener (SCRAM-SHA-512 and -256 users created
#     when the storage is formatted), a plaintext INTERNAL listener for inter-broker traffic and
#     admin tools, and its controller; jars from the cache of scripts/services.sh;
#   - Redis with TLS only (`port 0`), `user default off`, an `admin` user and an `sm` user
#     limited to the worker's minimal ACL rule on `~sm:*` (tests create per-test users the same
#     way through `admin`).
# Passwords are random, made at the first start, and kept in files under the run dir (secrets/).
#
# Usage: scripts/services-secure.sh {start|stop|status|env}
#   start   start what is not running (running ones are reused), wait until ready
#   stop    stop both by pid file (TERM, wait, KILL)
#   status  exit 0 only if both answer
#   env     print `export SM_SECURE_...` lines for the tests: eval "$(scripts/services-secure.sh env)"
#
# Environment:
#   SM_SECURE_RUN_DIR        run state (<repo>/.local/run-secure)
#   SM_SECURE_KAFKA_PORT     SASL_SSL listener (29802); INTERNAL is PORT-1, CONTROLLER PORT-2
#   SM_SECURE_REDIS_PORT     Redis TLS port (29830)
#   SM_STARTED_FILE          if set, `start` appends "secure" when it launched something
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${SM_SECURE_RUN_DIR:-$ROOT/.local/run-secure}
SASL_PORT=${SM_SECURE_KAFKA_PORT:-29802}
REDIS_PORT=${SM_SECURE_REDIS_PORT:-29830}
for _p in "$SASL_PORT" "$REDIS_PORT"; do
    [[ $_p =~ ^[0-9]+$ ]] || { echo "services-secure: error: port '$_p' is not a number" >&2; exit 2; }
done
INTERNAL_PORT=$((SASL_PORT - 1))
CTRL_PORT=$((SASL_PORT - 2))
TLS=$RUN/tls
SECRETS=$RUN/secrets
KDIR=$RUN/kafka
RDIR=$RUN/redis-tls
KPROPS=$KDIR/server.properties
KPID=$KDIR/kafka.pid
RPID=$RDIR/redis.pid
KAFKA_TIMEOUT=${SM_KAFKA_START_TIMEOUT:-90}

log() { printf 'services-secure: %s\n' "$*" >&2; }
die() { printf 'services-secure: error: %s\n' "$*" >&2; exit 1; }

proc_alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}

# running_pid PIDFILE MARKER — the pid, if the pid file names a live process of ours.
running_pid() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    [[ -n $pid ]] && proc_alive "$pid" || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$2"* ]] || return 1
    printf '%s\n' "$pid"
}

port_open() {
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" >/dev/null 2>&1
}

kill_pid() {
    local name=$1 pid=$2 grace=$3 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + grace))
    while proc_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) did not stop within ${grace}s, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
}

note_started() {
    if [[ -n ${SM_STARTED_FILE:-} ]]; then printf 'secure\n' >>"$SM_STARTED_FILE"; fi
}

secret() {  # secret NAME — create once (random), print the path
    local f=$SECRETS/$1
    if [[ ! -s $f ]]; then
        mkdir -p "$SECRETS"
        chmod 700 "$SECRETS"
        (umask 077 && openssl rand -hex 16 >"$f")
    fi
    printf '%s\n' "$f"
}

# ---------------------------------------------------------------- TLS

make_tls() {
    [[ -s $TLS/server.crt && -s $TLS/other-ca.crt ]] && return 0
    if ! command -v openssl >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing openssl…"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends openssl; } >&2 || die "apt-get install openssl failed"
        else
            die "openssl is missing (sudo apt-get install openssl)"
        fi
    fi
    mkdir -p "$TLS"
    log "making a test CA and a server certificate for localhost/127.0.0.1 in $TLS…"
    (
        cd "$TLS"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=stream-monitor-test-ca" \
            -keyout ca.key -out ca.crt
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -sha256 \
            -extfile server.ext -out server.crt
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=some-other-ca" \
            -keyout other-ca.key -out other-ca.crt
        chmod 644 ca.crt server.crt other-ca.crt
    ) >"$RUN/tls.log" 2>&1 || { cat "$RUN/tls.log" >&2; die "openssl failed"; }
}

# ---------------------------------------------------------------- Kafka

kafka_ready() {  # the plaintext INTERNAL listener answers a metadata request
    local out
    out=$(timeout 10 kcat -b "127.0.0.1:$INTERNAL_PORT" -L -m 3 2>/dev/null) || return 1
    grep -Eq '^[[:space:]]*broker [0-9]+ at ' <<<"$out"
}

start_kafka() {
    local pid libs cid p
    if pid=$(running_pid "$KPID" "$KPROPS"); then
        log "kafka (SASL_SSL) already running (pid $pid)"
        return 0
    fi
    for p in "$CTRL_PORT" "$INTERNAL_PORT" "$SASL_PORT"; do
        port_open "$p" && die "port $p is in use by another process; set SM_SECURE_KAFKA_PORT"
    done
    libs=$(bash "$ROOT/scripts/services.sh" jars) || die "no Kafka jars (scripts/services.sh jars)"
    mkdir -p "$KDIR/data" "$KDIR/logs"
    cat "$TLS/server.key" "$TLS/server.crt" "$TLS/ca.crt" >"$KDIR/server-keystore.pem"
    chmod 600 "$KDIR/server-keystore.pem"
    cat >"$KPROPS" <<EOF
# Generated by scripts/services-secure.sh on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
controller.listener.names=CONTROLLER
listeners=CONTROLLER://127.0.0.1:$CTRL_PORT,INTERNAL://127.0.0.1:$INTERNAL_PORT,SASL_SSL://localhost:$SASL_PORT
advertised.listeners=INTERNAL://127.0.0.1:$INTERNAL_PORT,SASL_SSL://localhost:$SASL_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$KDIR/server-keystore.pem
ssl.client.auth=none
log.dirs=$KDIR/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=true
EOF
    cat >"$KDIR/log4j2.properties" <<'EOF'
status = warn
shutdownHook = disable
appender.server.type = File
appender.server.name = SERVER
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
    if [[ ! -f $KDIR/data/meta.properties ]]; then
        cid=$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
        cid=${cid//[[:space:]]/}
        # SCRAM users exist from the first start: KRaft writes them with the storage format.
        java -cp "$libs/*" kafka.tools.StorageTool format -t "$cid" -c "$KPROPS" \
            --add-scram "SCRAM-SHA-512=[name=admin,password=$(<"$(secret kafka-admin)")]" \
            --add-scram "SCRAM-SHA-512=[name=alice,password=$(<"$(secret kafka-alice)")]" \
            --add-scram "SCRAM-SHA-256=[name=bob,password=$(<"$(secret kafka-bob)")]" \
            >"$KDIR/logs/format.log" 2>&1 || { cat "$KDIR/logs/format.log" >&2; die "kafka storage format failed"; }
    fi
    [[ -f $KDIR/logs/server.log ]] && mv -f "$KDIR/logs/server.log" "$KDIR/logs/server.log.prev"
    log "starting kafka with SASL_SSL on localhost:$SASL_PORT (internal 127.0.0.1:$INTERNAL_PORT)…"
    (
        cd "$KDIR"
        exec setsid nohup java -Xms128m -Xmx384m -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -Dkafka.logs.dir="$KDIR/logs" \
            -cp "$libs/*" kafka.Kafka "$KPROPS" </dev/null >"$KDIR/logs/stdout.log" 2>&1 8>&- 9>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$KPID"
    note_started
    local deadline=$((SECONDS + KAFKA_TIMEOUT))
    until kafka_ready && grep -q 'Kafka Server started' "$KDIR/logs/server.log" 2>/dev/null; do
        if ! proc_alive "$pid" || ((SECONDS >= deadline)); then
            tail -n 30 "$KDIR/logs/server.log" "$KDIR/logs/stdout.log" >&2 || true
            kill_pid kafka "$pid" 10
            rm -f "$KPID"
            die "secure kafka did not start (logs: $KDIR/logs)"
        fi
        sleep 0.5
    done
    log "kafka (SASL_SSL) ready on localhost:$SASL_PORT (pid $pid)"
}

# ---------------------------------------------------------------- Redis

redis_ready() {
    local out
    out=$(timeout 5 redis-cli --tls --cacert "$TLS/ca.crt" -h localhost -p "$REDIS_PORT" \
        --user admin --pass "$(<"$(secret redis-admin)")" --no-auth-warning ping 2>/dev/null) || return 1
    [[ $out == PONG ]]  # redis-cli exits 0 even when AUTH failed
}

start_redis() {
    local pid
    if pid=$(running_pid "$RPID" ":$REDIS_PORT"); then
        log "redis (TLS) already running (pid $pid)"
        return 0
    fi
    port_open "$REDIS_PORT" && die "port $REDIS_PORT is in use by another process; set SM_SECURE_REDIS_PORT"
    command -v redis-server >/dev/null || die "redis-server is missing (scripts/services.sh start installs it)"
    mkdir -p "$RDIR"
    local acl
    acl=$(cd "$ROOT" && "$ROOT/.venv/bin/python" -c \
        'from stream_monitor.state.connection import minimal_acl_rule; print(minimal_acl_rule("sm"))')
    (
        umask 077
        cat >"$RDIR/redis.conf" <<EOF
# Generated by scripts/services-secure.sh on every start. TLS only; no default user.
port 0
tls-port $REDIS_PORT
bind 127.0.0.1
tls-cert-file $TLS/server.crt
tls-key-file $TLS/server.key
tls-ca-cert-file $TLS/ca.crt
tls-auth-clients optional
dir $RDIR
logfile $RDIR/redis.log
save ""
appendonly no
daemonize no
user default off
user admin on >$(<"$(secret redis-admin)") ~* &* +@all
user sm on >$(<"$(secret redis-sm)") $acl
EOF
    )
    log "starting redis with TLS only on localhost:$REDIS_PORT…"
    (
        cd "$RDIR"
        exec setsid nohup redis-server "$RDIR/redis.conf" </dev/null >/dev/null 2>&1 8>&- 9>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$RPID"
    note_started
    local deadline=$((SECONDS + 20))
    until redis_ready; do
        if ! proc_alive "$pid" || ((SECONDS >= deadline)); then
            tail -n 20 "$RDIR/redis.log" >&2 || true
            kill_pid redis "$pid" 5
            rm -f "$RPID"
            die "secure redis did not start (log: $RDIR/redis.log)"
        fi
        sleep 0.2
    done
    log "redis (TLS + ACL) ready on localhost:$REDIS_PORT (pid $pid)"
}

# ---------------------------------------------------------------- main

print_env() {
    printf 'export SM_SECURE_KAFKA_BOOTSTRAP=%q\n' "localhost:$SASL_PORT"
    printf 'export SM_SECURE_KAFKA_INTERNAL=%q\n' "127.0.0.1:$INTERNAL_PORT"
    printf 'export SM_SECURE_REDIS_URL=%q\n' "rediss://localhost:$REDIS_PORT/0"
    printf 'export SM_SECURE_CA=%q\n' "$TLS/ca.crt"
    printf 'export SM_SECURE_OTHER_CA=%q\n' "$TLS/other-ca.crt"
    printf 'export SM_SECURE_SECRETS=%q\n' "$SECRETS"
}

case ${1:-} in
    start)
        mkdir -p "$RUN"
        exec 9>"$RUN/.lock"
        flock -w 300 9 || die "another services-secure.sh holds $RUN/.lock"
        make_tls
        start_kafka
        start_redis
        ;;
    stop)
        mkdir -p "$RUN"
        exec 9>"$RUN/.lock"
        flock -w 300 9 || die "another services-secure.sh holds $RUN/.lock"
        if pid=$(running_pid "$KPID" "$KPROPS"); then log "stopping kafka (pid $pid)"; kill_pid kafka "$pid" 60; fi
        if pid=$(running_pid "$RPID" ":$REDIS_PORT"); then log "stopping redis (pid $pid)"; kill_pid redis "$pid" 10; fi
        rm -f "$KPID" "$RPID"
        ;;
    status)
        rc=0
        if kafka_ready; then echo "kafka (SASL_SSL): answering"; else echo "kafka (SASL_SSL): not answering"; rc=3; fi
        if [[ -s $SECRETS/redis-admin ]] && redis_ready; then echo "redis (TLS): answering"; else echo "redis (TLS): not answering"; rc=3; fi
        exit "$rc"
        ;;
    env) print_env ;;
    *) echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
