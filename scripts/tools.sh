#!/usr/bin/env bash
# Install the tools the `deploy` tests need, into a cache outside the repo (idempotent):
#   - Helm, built from the Go module proxy: GOBIN=<cache> go install helm.sh/helm/v3/cmd/helm@v3.22.0
#     (several minutes of compiling on 2 cores, the first time only);
#   - KEDA's CRDs (ScaledObject, TriggerAuthentication), from KEDA's Go module
#     (go mod download github.com/kedacore/keda/v2@v2.21.0 -> config/crd/bases/).
# Then writes <cache>/tools.env (SM_HELM=..., SM_KEDA_CRDS=...), which scripts/test.sh exports.
#
# Environment: SM_TOOLS_CACHE  cache dir (default: ~/.cache/stream-monitor)
#              SM_GO           the go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

HELM_VERSION=v3.22.0
KEDA_VERSION=v2.21.0
CACHE=${SM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-monitor}
HELM_DIR=$CACHE/helm-$HELM_VERSION
KEDA_DIR=$CACHE/keda-$KEDA_VERSION

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

if [[ -x $HELM_DIR/bin/helm ]] && "$HELM_DIR/bin/helm" version --short >/dev/null 2>&1; then
    log "helm $HELM_VERSION: $HELM_DIR/bin/helm (cached)"
else
    GO=$(find_go)
    log "building helm $HELM_VERSION with $("$GO" version) (first time only; several minutes on 2 cores)…"
    tmp=$(mktemp -d "$CACHE/.helm-build.XXXXXX")
    # Built into a temporary dir and moved into place, so an interrupted build leaves no half binary.
    GOBIN=$tmp GOFLAGS=-buildvcs=false "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
        || { rm -rf "$tmp"; die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"; }
    mkdir -p "$HELM_DIR/bin"
    mv "$tmp/helm" "$HELM_DIR/bin/helm"
    rm -rf "$tmp"
    log "helm $HELM_VERSION built: $HELM_DIR/bin/helm"
fi

CRDS=(keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml)
have_crds=true
for f in "${CRDS[@]}"; do [[ -s $KEDA_DIR/crds/$f ]] || have_crds=false; done
if $have_crds; then
    log "KEDA $KEDA_VERSION CRDs: $KEDA_DIR/crds (cached)"
else
    GO=$(find_go)
    log "downloading KEDA $KEDA_VERSION's Go module for its CRDs…"
    json=$(cd "$CACHE" && "$GO" mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION") \
        || die "go mod download github.com/kedacore/keda/v2@$KEDA_VERSION failed"
    dir=$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -d $dir/config/crd/bases ]] || die "KEDA module has no config/crd/bases (Dir: ${dir:-?})"
    mkdir -p "$KEDA_DIR/crds"
    for f in "${CRDS[@]}"; do cp "$dir/config/crd/bases/$f" "$KEDA_DIR/crds/$f.tmp" && mv "$KEDA_DIR/crds/$f.tmp" "$KEDA_DIR/crds/$f"; done
    log "KEDA $KEDA_VERSION CRDs copied to $KEDA_DIR/crds"
fi

cat >"$CACHE/tools.env.tmp" <<EOF
SM_HELM=$HELM_DIR/bin/helm
SM_KEDA_CRDS=$KEDA_DIR/crds
EOF
mv "$CACHE/tools.env.tmp" "$CACHE/tools.env"
log "tools ready ($CACHE/tools.env)"
