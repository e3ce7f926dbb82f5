#!/usr/bin/env bash
# Create or refresh <repo>/.venv: a Python 3.11+ virtualenv with stream-monitor installed
# editable with its dev extras. pip runs only when pyproject.toml changed since the last
# successful install (its sha256 is kept in .venv), so repeated calls are fast and offline.
#
# Environment: SM_PYTHON  interpreter used to create the venv (default: python3)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
PY=${SM_PYTHON:-python3}
STAMP=$VENV/.stream-monitor-pyproject.sha256

log() { printf 'venv: %s\n' "$*" >&2; }
die() { printf 'venv: error: %s\n' "$*" >&2; exit 1; }

[[ -f $ROOT/pyproject.toml ]] || die "no pyproject.toml in $ROOT"

# A venv whose interpreter vanished (e.g. a removed pyenv version) or is too old is rebuilt.
if [[ -e $VENV ]] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    log "$VENV is broken or older than Python 3.11; recreating it"
    rm -rf "$VENV"
fi

if [[ ! -x $VENV/bin/python ]]; then
    command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set SM_PYTHON to a Python 3.11+ interpreter)"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PY is $("$PY" -V 2>&1); stream-monitor needs Python 3.11+ (set SM_PYTHON)"
    log "creating .venv with $("$PY" -V 2>&1)…"
    "$PY" -m venv "$VENV"
    log "upgrading pip…"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi

want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [[ -f $STAMP && $(<"$STAMP") == "$want" ]]; then
    log ".venv is up to date"
    exit 0
fi

log "installing stream-monitor[dev] into .venv (pyproject.toml is new or changed; may take a few minutes)…"
rm -f "$STAMP"
(cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]') \
    || die "pip install -e '.[dev]' failed"
printf '%s\n' "$want" >"$STAMP"
log "installed"
