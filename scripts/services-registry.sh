#!/usr/bin/env bash
# A local Schema Registry for the `registry` tests: Apicurio Registry (Apache-2.0) from Maven
# Central, serving the Confluent-compatible API at /apis/ccompat/v7. No Docker. Storage is an H2
# database file in the run dir, so a restart keeps the schemas and their ids (a registry restart
# test relies on it); `clean` deletes it.
#
# Usage: scripts/services-registry.sh {start|stop|status|env|clean}
#   start   start the registry unless ours is running and answers; wait until it answers
#   stop    stop ours by pid file (only a pid whose command line is the registry's jar): TERM,
#           wait, then KILL
#   status  one line; exit 0 only if the registry answers
#   env     print `export SCHEMA_REGISTRY_URL=http://127.0.0.1:<port>/apis/ccompat/v7`
#   clean   stop, then delete the run dir (schemas, logs); the unpacked distribution stays cached
#
# Environment:
#   SM_REGISTRY_PORT          API port (28120)
#   SM_REGISTRY_MGMT_PORT     Quarkus management port (28121)
#   SM_REGISTRY_RUN_DIR       database, logs, pid file (<repo>/.local/run/registry)
#   SM_REGISTRY_TIMEOUT       seconds to wait until it answers (120; 10-60 s here, by load)
#   SM_JAVA                   a java binary of JDK 21 or newer (else found under /usr/lib/jvm,
#                             JAVA_HOME, or on PATH)
#   SM_STARTED_FILE           if set, `start` appends "registry" when it launched the registry
#
# The distribution (apicurio-registry-app:<version>:tar.gz:all, about 160 MB) is unpacked once
# into ${XDG_CACHE_HOME:-~/.cache}/stream-monitor/apicurio-registry-<version>.
# Progress goes to stderr; `env` and `status` write to stdout.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_NAME=services-registry
# shellcheck source=scripts/services-lib.sh
source "$ROOT/scripts/services-lib.sh"
VERSION=3.3.3
PORT=${SM_REGISTRY_PORT:-28120}
MGMT_PORT=${SM_REGISTRY_MGMT_PORT:-28121}
check_ports "$PORT" "$MGMT_PORT"
RUN_DIR=${SM_REGISTRY_RUN_DIR:-$ROOT/.local/run/registry}
TIMEOUT=${SM_REGISTRY_TIMEOUT:-120}
CACHE_DIR=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/stream-monitor/apicurio-registry-$VERSION
STAMP=$CACHE_DIR.complete
URL=http://127.0.0.1:$PORT/apis/ccompat/v7

# java_major JAVA — the feature version (e.g. 25) of a java binary, or nothing.
java_major() {
    "$1" -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\).*/\1/p' | head -n1
}

# find_java — print a java binary of JDK 21 or newer: SM_JAVA, JAVA_HOME, /usr/lib/jvm/*, PATH.
find_java() {
    local c v candidates=()
    [[ -n ${SM_JAVA:-} ]] && candidates+=("$SM_JAVA")
    [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME/bin/java")
    for c in /usr/lib/jvm/*/bin/java; do [[ -x $c ]] && candidates+=("$c"); done
    c=$(command -v java 2>/dev/null) && candidates+=("$c")
    for c in "${candidates[@]}"; do
        [[ -x $c ]] || continue
        v=$(java_major "$c")
        if [[ -n $v ]] && ((v >= 21)); then
            printf '%s\n' "$c"
            return 0
        fi
    done
    die "Apicurio Registry $VERSION needs Java 21 or newer; none found (tried: ${candidates[*]:-nothing}). Install a JDK 21+ (e.g. apt-get install openjdk-21-jre-headless) or set SM_JAVA to its java"
}

# fetch — the unpacked distribution in the cache (Maven Central, once).
fetch() {
    [[ -f $STAMP && -f $CACHE_DIR/quarkus-run.jar ]] && return 0
    ensure_cmds mvn:maven
    mkdir -p "$(dirname "$CACHE_DIR")"
    exec 8>"$CACHE_DIR.lock"
    flock -w 600 8 || die "another process holds $CACHE_DIR.lock"
    [[ -f $STAMP && -f $CACHE_DIR/quarkus-run.jar ]] && return 0
    log "fetching Apicurio Registry $VERSION from Maven Central (about 160 MB, once)…"
    rm -rf -- "$CACHE_DIR"
    mkdir -p "$CACHE_DIR"
    # Run from the cache: without a project the plugin writes its markers under the working
    # directory (a literal "${project.basedir}" folder), which must not land in the checkout.
    if ! (cd "$(dirname "$CACHE_DIR")" && mvn -q -B \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:unpack \
        -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
        -DoutputDirectory="$CACHE_DIR") \
        >"$CACHE_DIR.mvn.log" 2>&1; then
        tail -n 40 "$CACHE_DIR.mvn.log" >&2
        die "could not fetch Apicurio Registry with Maven (full log: $CACHE_DIR.mvn.log)"
    fi
    [[ -f $CACHE_DIR/quarkus-run.jar ]] || die "the distribution has no quarkus-run.jar ($CACHE_DIR)"
    touch "$STAMP"
    log "cached in $CACHE_DIR"
}

registry_pid() { running_pid "$RUN_DIR/registry.pid" quarkus-run.jar "quarkus.http.port=$PORT"; }

answers() {
    local out
    out=$(curl -fsS --max-time 3 "$URL/subjects" 2>/dev/null) || return 1
    [[ $out == \[* ]]
}

start() {
    ensure_cmds curl:curl
    lock_run_dir "$RUN_DIR"
    local java pid deadline
    if pid=$(registry_pid) && answers; then
        log "registry already running (pid $pid) at $URL"
        return 0
    fi
    if [[ -z ${pid:-} ]] && { port_open "$PORT" || port_open "$MGMT_PORT"; }; then
        die "port $PORT or $MGMT_PORT is taken by something else; stop it or set SM_REGISTRY_PORT / SM_REGISTRY_MGMT_PORT"
    fi
    if [[ -z ${pid:-} ]]; then
        java=$(find_java)
        fetch
        mkdir -p "$RUN_DIR"
        (
            cd "$RUN_DIR"
            exec setsid nohup "$java" -Xms32m -Xmx256m \
                -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
                -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$MGMT_PORT" \
                -Dapicurio.datasource.url="jdbc:h2:file:$RUN_DIR/data/registry" \
                -jar "$CACHE_DIR/quarkus-run.jar" </dev/null >"$RUN_DIR/registry.log" 2>&1 8>&- 9>&-
        ) &
        pid=$!
        echo "$pid" >"$RUN_DIR/registry.pid"
        note_started registry
        log "started Apicurio Registry $VERSION (pid $pid, $java)"
    fi
    deadline=$((SECONDS + TIMEOUT))
    until answers; do
        proc_alive "$pid" || { tail -n 30 "$RUN_DIR/registry.log" >&2; die "the registry exited; see $RUN_DIR/registry.log"; }
        ((SECONDS < deadline)) || die "the registry does not answer at $URL after ${TIMEOUT}s; see $RUN_DIR/registry.log"
        sleep 0.3
    done
    log "registry answers at $URL"
}

stop() {
    lock_run_dir "$RUN_DIR"
    local pid
    if pid=$(registry_pid); then
        kill_pid registry "$pid" 15
        log "stopped the registry (pid $pid)"
    fi
    rm -f "$RUN_DIR/registry.pid"
}

status() {
    local pid
    if pid=$(registry_pid) && answers; then
        echo "registry: running (pid $pid) at $URL"
    elif [[ -n ${pid:-} ]]; then
        echo "registry: running (pid $pid) but not answering at $URL"
        return 3
    else
        echo "registry: stopped"
        return 3
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) printf 'export SCHEMA_REGISTRY_URL=%q\n' "$URL" ;;
    clean)
        stop
        [[ -n $RUN_DIR && $RUN_DIR != / ]] || die "refusing to delete '$RUN_DIR'"
        rm -rf -- "$RUN_DIR"
        log "removed $RUN_DIR"
        ;;
    *) echo "usage: $0 {start|stop|status|env|clean}" >&2; exit 2 ;;
esac
