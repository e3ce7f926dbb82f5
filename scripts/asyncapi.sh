#!/usr/bin/env bash
# Validate an AsyncAPI document with the official parser from npm:
#   scripts/asyncapi.sh [document]      (default: docs/asyncapi.yaml)
#
# Installs @asyncapi/parser (the version pinned in scripts/asyncapi/package.json, with every
# dependency pinned by scripts/asyncapi/package-lock.json) into a cache outside the repo with
# `npm ci`, the first time only (about 1-2 minutes), then runs scripts/asyncapi/validate.mjs:
# every diagnostic is printed as a JSON line; the exit status is 1 when the parser reports an
# error, and non-zero when node or npm is missing or the install fails (never a silent skip).
# tests/docs/test_asyncapi.py runs it; needs Node 20+ and npm (registry.npmjs.org).
#
# Environment: SM_TOOLS_CACHE  cache dir (default: ~/.cache/stream-monitor, as scripts/tools.sh)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/scripts/asyncapi
CACHE=${SM_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-monitor}
DOC=$(realpath -- "${1:-$ROOT/docs/asyncapi.yaml}")

log() { printf 'asyncapi.sh: %s\n' "$*" >&2; }
die() { printf 'asyncapi.sh: error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || die "node is not installed (Node 20+ with npm; e.g. apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (e.g. apt-get install npm)"
major=$(node -p 'process.versions.node.split(".")[0]')
(( major >= 18 )) || die "node $(node --version) is too old for @asyncapi/parser: install Node 20+"

# The install dir is named after the lock file's hash: a changed pin installs afresh.
lock_hash=$(sha256sum "$SRC/package-lock.json" | cut -c1-12)
DIR=$CACHE/asyncapi-parser-$lock_hash
mkdir -p "$CACHE"
exec 9>"$CACHE/.asyncapi.lock"  # one installer at a time (parallel test runs share the cache)
flock 9
if [[ -f $DIR/.installed ]]; then
    log "@asyncapi/parser: $DIR (cached)"
else
    log "installing @asyncapi/parser with npm ci into $DIR (first time only)…"
    tmp=$(mktemp -d "$CACHE/.asyncapi-install.XXXXXX")
    cp "$SRC/package.json" "$SRC/package-lock.json" "$tmp/"
    # --ignore-scripts: nothing from the registry runs at install time.
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
        || { rm -rf "$tmp"; die "npm ci of @asyncapi/parser failed (see above)"; }
    rm -rf "$DIR"
    mv "$tmp" "$DIR"
    touch "$DIR/.installed"
    log "@asyncapi/parser installed: $DIR"
fi
flock -u 9
# Next to node_modules, where node resolves its imports; copied then renamed (parallel runs).
cp "$SRC/validate.mjs" "$DIR/.validate.$$.mjs" && mv "$DIR/.validate.$$.mjs" "$DIR/validate.mjs"
exec node "$DIR/validate.mjs" "$DOC"
