#!/usr/bin/env bash
# Install the client libraries used by tests/clients/ (idempotent).
#   Python: venv at $REPO/.clients/venv with tests/clients/requirements.txt
#   Node:   tests/clients/node_modules from tests/clients/package-lock.json
# Each half is skipped when its stamp file matches the hash of its inputs.
#   scripts/client-deps.sh           install what is missing or stale
#   scripts/client-deps.sh --force   reinstall both
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FORCE=0
case "${1:-}" in
    "") ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

CLIENTS="$REPO/tests/clients"
STATE="$REPO/.clients"
VENV="$STATE/venv"
REQS="$CLIENTS/requirements.txt"
[ -f "$REQS" ] || die "missing $REQS"
[ -f "$CLIENTS/package.json" ] || die "missing $CLIENTS/package.json"
mkdir -p "$STATE"

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# up_to_date STAMP HASH: true when STAMP holds HASH (and --force not given).
up_to_date() { [ "$FORCE" -eq 0 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# ---------------------------------------------------------------- Python ----
python_deps() {
    command -v python3 >/dev/null 2>&1 || die "python3 not found"
    local stamp="$STATE/python.stamp" want
    want="$(hash_of "$REQS")-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if up_to_date "$stamp" "$want" && [ -x "$VENV/bin/python" ]; then
        log "python: venv $VENV is up to date"
        return 0
    fi
    rm -f "$stamp"
    if [ ! -x "$VENV/bin/pip" ]; then
        rm -rf "$VENV"
        log "python: creating venv $VENV"
        if ! python3 -m venv "$VENV" 2>"$STATE/venv.err"; then
            # Debian splits venv/ensurepip into python3-venv (python3.X-venv).
            log "python: 'python3 -m venv' failed ($(tail -n1 "$STATE/venv.err")); installing python3-venv"
            rm -rf "$VENV"
            local ver
            ver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
            apt_install python3-venv "python$ver-venv" || apt_install python3-venv \
                || die "could not install python3-venv with apt-get"
            python3 -m venv "$VENV" || die "python3 -m venv $VENV failed even after installing python3-venv"
        fi
        rm -f "$STATE/venv.err"
    fi
    log "python: pip install -r tests/clients/requirements.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQS" \
        || die "pip install into $VENV failed"
    "$VENV/bin/python" -c 'import asyncpg, psycopg; print("asyncpg", asyncpg.__version__, "psycopg", psycopg.__version__, psycopg.pq.__impl__)' \
        >"$STATE/python.versions" || die "installed Python packages do not import"
    log "python: installed $(cat "$STATE/python.versions")"
    echo "$want" >"$stamp"
}

# ------------------------------------------------------------------ Node ----
node_deps() {
    command -v node >/dev/null 2>&1 || die "node not found"
    command -v npm >/dev/null 2>&1 || die "npm not found"
    local stamp="$STATE/node.stamp" want lock="$CLIENTS/package-lock.json"
    if [ -f "$lock" ]; then
        want="$(hash_of "$CLIENTS/package.json" "$lock")-$(node --version)"
    else
        want="$(hash_of "$CLIENTS/package.json")-$(node --version)"
    fi
    if up_to_date "$stamp" "$want" && [ -d "$CLIENTS/node_modules/pg" ] && [ -d "$CLIENTS/node_modules/postgres" ] && [ -d "$CLIENTS/node_modules/@neondatabase/serverless" ] && [ -d "$CLIENTS/node_modules/ws" ]; then
        log "node: tests/clients/node_modules is up to date"
        return 0
    fi
    rm -f "$stamp"
    local npm_flags=(--no-audit --no-fund --loglevel=error)
    if [ -f "$lock" ]; then
        log "node: npm ci in tests/clients"
        (cd "$CLIENTS" && npm ci "${npm_flags[@]}") || die "npm ci in $CLIENTS failed"
    else
        log "node: no package-lock.json; npm install in tests/clients"
        (cd "$CLIENTS" && npm install "${npm_flags[@]}") || die "npm install in $CLIENTS failed"
    fi
    (cd "$CLIENTS" && node -e 'require("pg"); require("postgres"); require("@neondatabase/serverless"); require("ws"); const v = n => JSON.parse(require("fs").readFileSync("node_modules/" + n + "/package.json")).version; console.log("pg", v("pg"), "postgres", v("postgres"))') \
        >"$STATE/node.versions" || die "installed Node packages do not load"
    log "node: installed $(cat "$STATE/node.versions")"
    echo "$want" >"$stamp"
}

# ------------------------------------------------ PgBouncer's sample ----
# PgBouncer's own sample configuration, for the import-pgbouncer test
# (tests/cli_tools.rs): unpacked from Debian's package, not installed (no
# service starts), into $STATE/pgbouncer.
pgbouncer_sample() {
    local dir="$STATE/pgbouncer" sample="$STATE/pgbouncer/usr/share/doc/pgbouncer/examples/pgbouncer.ini"
    if [ -f "$sample" ]; then
        log "pgbouncer sample: up to date"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get is needed to fetch PgBouncer's sample configuration"
    local tmp; tmp="$(mktemp -d)"
    chmod 0777 "$tmp"   # apt's download sandbox user writes here
    (cd "$tmp" && apt-get download pgbouncer >/dev/null 2>&1) \
        || { apt-get update >/dev/null 2>&1 && (cd "$tmp" && apt-get download pgbouncer >/dev/null 2>&1); } \
        || die "apt-get download pgbouncer failed"
    rm -rf "$dir"
    dpkg-deb -x "$tmp"/pgbouncer_*.deb "$dir" || die "cannot unpack the pgbouncer package"
    rm -rf "$tmp"
    [ -f "$sample" ] || die "the pgbouncer package has no $sample"
    log "pgbouncer sample: $sample"
}

python_deps
node_deps
pgbouncer_sample
log "client deps ready: $VENV/bin/python, $CLIENTS/node_modules, $STATE/pgbouncer"
