#!/usr/bin/env bash
# Install the tools the `deploy` tests need, into a cache outside the repo (idempotent):
#   - Helm, built from the Go module proxy: GOBIN=<cache> go install helm.sh/helm/v3/cmd/helm@v3.22.0
#     (several minutes of compiling on 2 cores, the first time only);
#   - amtool (Alertmanager's CLI: checks deploy/alertmanager/alertmanager.yml and its routes), the
#     same way: go install github.com/prometheus/alertmanager/cmd/amtool@v0.28.1, the version of
#     the compose stack's Alertmanager image (tests/deploy/test_alertmanager.py checks they agree);
#   - KEDA's CRDs (ScaledObject, TriggerAuthentication), from KEDA's Go module
#     (go mod download github.com/kedacore/keda/v2@v2.21.0 -> config/crd/bases/);
#   - the Prometheus Operator's ServiceMonitor CRD, from its Go module (v0.85.0,
#     example/prometheus-operator-crd/).
# Then writes <cache>/tools.env (SM_HELM, SM_AMTOOL, SM_KEDA_CRDS, SM_PROMETHEUS_OPERATOR_CRDS), which
# scripts/test.sh exports.
#
# Environment: SM_TOOLS_CACHE  cache dir (default: ~/.cache/stream-monitor)
#              SM_GO           the go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

HELM_VERSION=v3.22.0
AMTOOL_VERSION=v0.28.1
KEDA_VERSION=v2.21.0
PROM_OPERATOR_VERSION=v0.85.0
CACHE=${SM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-monitor}
HELM_DIR=$CACHE/helm-$HELM_VERSION
AMTOOL_DIR=$CACHE/amtool-$AMTOOL_VERSION
KEDA_DIR=$CACHE/keda-$KEDA_VERSION
PROM_DIR=$CACHE/prometheus-operator-$PROM_OPERATOR_VERSION

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() { printf 'tools.sh: error: %s\n' "$*" >&2; exit 1; }

find_go() {
    if [[ -n ${SM_GO:-} ]]; then echo "$SM_GO"; return; fi
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
    die "no Go toolchain (needed to build Helm and fetch KEDA's CRDs from the Go module proxy): install Go 1.24+ or set SM_GO"
}

mkdir -p "$CACHE"
# One installer at a time (parallel test runs share the cache).
exec 9>"$CACHE/.tools.lock"
flock 9

# go_tool NAME PACKAGE VERSION DIR: build PACKAGE@VERSION into DIR/bin/NAME unless it is there and runs.
go_tool() {
    local name=$1 package=$2 version=$3 dir=$4 tmp
    if [[ -x $dir/bin/$name ]] && "$dir/bin/$name" --help >/dev/null 2>&1; then
        log "$name $version: $dir/bin/$name (cached)"
        return
    fi
    GO=$(find_go)
    log "building $name $version with $("$GO" version) (first time only; minutes on 2 cores)…"
    tmp=$(mktemp -d "$CACHE/.$name-build.XXXXXX")
    # Built into a temporary dir and moved into place, so an interrupted build leaves no half binary.
    GOBIN=$tmp GOFLAGS=-buildvcs=false "$GO" install "$package@$version" \
        || { rm -rf "$tmp"; die "go install $package@$version failed"; }
    mkdir -p "$dir/bin"
    mv "$tmp/$name" "$dir/bin/$name"
    rm -rf "$tmp"
    log "$name $version built: $dir/bin/$name"
}

go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$HELM_DIR"
go_tool amtool github.com/prometheus/alertmanager/cmd/amtool "$AMTOOL_VERSION" "$AMTOOL_DIR"

# crds_from_module NAME MODULE@VERSION SUBDIR DEST FILE...: copy CRD files out of a Go module.
crds_from_module() {
    local name=$1 module=$2 subdir=$3 dest=$4 have=true json dir f
    shift 4
    for f in "$@"; do [[ -s $dest/$f ]] || have=false; done
    if $have; then
        log "$name CRDs: $dest (cached)"
        return
    fi
    GO=$(find_go)
    log "downloading $module from the Go module proxy for its CRDs…"
    json=$(cd "$CACHE" && "$GO" mod download -json "$module") || die "go mod download $module failed"
    dir=$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -d $dir/$subdir ]] || die "$module has no $subdir (Dir: ${dir:-?})"
    mkdir -p "$dest"
    for f in "$@"; do
        cp "$dir/$subdir/$f" "$dest/$f.tmp" && mv "$dest/$f.tmp" "$dest/$f"
    done
    log "$name CRDs copied to $dest"
}

crds_from_module "KEDA $KEDA_VERSION" "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    config/crd/bases "$KEDA_DIR/crds" keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml
crds_from_module "Prometheus Operator $PROM_OPERATOR_VERSION" \
    "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" \
    example/prometheus-operator-crd "$PROM_DIR/crds" monitoring.coreos.com_servicemonitors.yaml

cat >"$CACHE/tools.env.tmp" <<EOF
SM_HELM=$HELM_DIR/bin/helm
SM_AMTOOL=$AMTOOL_DIR/bin/amtool
SM_KEDA_CRDS=$KEDA_DIR/crds
SM_PROMETHEUS_OPERATOR_CRDS=$PROM_DIR/crds
EOF
mv "$CACHE/tools.env.tmp" "$CACHE/tools.env"
log "tools ready ($CACHE/tools.env)"
