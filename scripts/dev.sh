#!/usr/bin/env bash
# The newcomer's "run it" command: start the local test cluster (primary + 2
# replicas), build pgswitch in release mode and run it on 127.0.0.1:6432.
# Extra arguments are passed to pgswitch, e.g.  scripts/dev.sh --pool-mode session
# (the default here is transaction mode, where reads go to the replicas)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

if ! ensure_cargo_on_path; then
    cargo_missing_hint
    exit 1
fi

bash "$REPO/scripts/cluster.sh" up
eval "$(bash "$REPO/scripts/cluster.sh" env)"

log "cargo build --release"
cargo build --release

LISTEN=127.0.0.1:6432
# Transaction mode, where read routing applies; a --pool-mode flag wins.
export PGSWITCH_POOL_MODE="${PGSWITCH_POOL_MODE:-transaction}"
export PGSWITCH_METRICS_LISTEN="${PGSWITCH_METRICS_LISTEN:-127.0.0.1:9930}"
if (exec 3<>/dev/tcp/127.0.0.1/6432) 2>/dev/null; then
    warn "something already listens on 127.0.0.1:6432 (Debian's pgbouncer service? try: service pgbouncer stop)"
fi
cat <<MSG

pgswitch is starting on $LISTEN in ${PGSWITCH_POOL_MODE} mode, reads routed to
the replicas (Ctrl-C to stop). In another terminal:
    psql postgres://app:app-secret@$LISTEN/app
    (SELECT inet_server_port(); shows which server answered: 15432 is the primary)
    psql postgres://app:app-secret@$LISTEN/pgswitch -c 'SHOW POOLS'   (admin console)
    curl http://$PGSWITCH_METRICS_LISTEN/metrics

MSG
exec target/release/pgswitch \
    --primary "$PGSWITCH_TEST_PRIMARY" \
    --replica "$PGSWITCH_TEST_REPLICA1" \
    --replica "$PGSWITCH_TEST_REPLICA2" \
    --listen "$LISTEN" \
    "$@"
