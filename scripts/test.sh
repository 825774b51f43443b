#!/usr/bin/env bash
# Run pgswitch's tests against a real primary + 2 streaming replicas.
#   scripts/test.sh                      all targets
#   scripts/test.sh --test limits        extra args go to `cargo test --all-targets`
#   scripts/test.sh -- --nocapture       ... including args for the test binaries
# RUST_TEST_THREADS defaults to 8 (set via env, not `-- --test-threads`,
# because criterion bench targets reject unknown flags under --all-targets).
# The cluster is left running unless PGSWITCH_TEST_STOP_CLUSTER=1.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

if ! ensure_cargo_on_path; then
    cargo_missing_hint
    exit 1
fi

# Client tools: psql lives in postgresql-client, pgbench in the server package.
missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
if ! command -v pgbench >/dev/null 2>&1 && ! PG_BIN="$(find_pg_bin)"; then
    missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if printf '%s\n' "${missing[@]}" | grep -qx postgresql; then
        ensure_pg_server   # also keeps Debian from creating a cluster on 5432
    else
        apt_install "${missing[@]}"
    fi
fi

# Client libraries for tests/clients.rs (asyncpg, psycopg, pg, postgres.js).
bash "$REPO/scripts/client-deps.sh"

bash "$REPO/scripts/cluster.sh" up
eval "$(bash "$REPO/scripts/cluster.sh" env)"
export PGSWITCH_TEST_PRIMARY PGSWITCH_TEST_REPLICA1 PGSWITCH_TEST_REPLICA2 \
    PGSWITCH_TEST_SUPERUSER PGSWITCH_TEST_MD5 PGSWITCH_TEST_TLS_CA PGSWITCH_TEST_TLS_USER
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"

if [ "${PGSWITCH_TEST_STOP_CLUSTER:-0}" = 1 ]; then
    trap 'bash "$REPO/scripts/cluster.sh" down || true' EXIT
fi

log "cargo test --all-targets $* (RUST_TEST_THREADS=$RUST_TEST_THREADS)"
rc=0
cargo test --all-targets "$@" || rc=$?
if [ "$rc" -eq 0 ]; then log "tests passed"; else log "tests FAILED (cargo exit code $rc)"; fi
exit "$rc"
