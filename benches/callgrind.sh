#!/usr/bin/env bash
# Instructions per transaction spent by pgswitch, counted by valgrind's
# callgrind: repeatable to a fraction of a percent on a noisy machine, so
# the way to compare two commits of the same code. pgswitch (--workers 1)
# runs under callgrind in front of the fake server (benches/tools/fake_pg.rs)
# twice, for a short and a long pgbench run (8 clients); the difference
# over the difference in transactions cancels start-up and shutdown.
# Server logins, the monitor and catalog reloads are taken out of each
# run's count (see instructions()).
#
#   bash benches/callgrind.sh                 # SELECT 1, simple protocol
#   BENCH_MODE=prepared bash benches/callgrind.sh
#   BENCH_SCRIPT=benches/tools/tpcb-like.sql bash benches/callgrind.sh
#   BENCH_ROUTING=eventual bash benches/callgrind.sh   # read routing, below
#
# Environment:
#   BENCH_MODE      pgbench -M: simple, extended or prepared (simple)
#   BENCH_SCRIPT    a pgbench script (default: SELECT 1)
#   BENCH_BUILD     1 = cargo build --release first (default); 0 = use the binaries
#   PGSWITCH_BIN    the binary to measure (default target/release/pgswitch)
#   FAKE_PORT / PGSWITCH_PORT   ports (16453 / 16454)
#   BENCH_ROUTING   none, read_your_writes or eventual: measure read routing
#                   in front of the scripts/cluster.sh cluster (it must be up,
#                   with the pgbench tables in database bench: run
#                   benches/routing.sh once) instead of the fake server, with
#                   routing.sh's mix (90% reads by primary key, 10% updates).
#                   none = the primary alone; the others add both replicas.
#                   health_check_interval is 50ms, as in routing.sh (the
#                   monitor's own work is taken out of the count, below).
# The long run's profile stays in .bench/callgrind.out for
# callgrind_annotate. Needs valgrind (apt-get install valgrind).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
# shellcheck source=benches/lib.sh
. "$REPO/benches/lib.sh"
cd "$REPO"

BENCH_MODE="${BENCH_MODE:-simple}"
BENCH_BUILD="${BENCH_BUILD:-1}"
FAKE_PORT="${FAKE_PORT:-16453}"
PGS_PORT="${PGSWITCH_PORT:-16454}"
BENCH_DIR="$REPO/.bench"
CLIENTS=8
SHORT=1000 LONG=3000  # transactions per client
export PGPASSWORD=app-secret PGSSLMODE=disable

mkdir -p "$BENCH_DIR"
command -v valgrind >/dev/null || apt_install valgrind
ensure_pg_server
PGBENCH="$PG_BIN/pgbench"
PGSWITCH_BIN="${PGSWITCH_BIN:-$REPO/target/release/pgswitch}"
SCRIPT="${BENCH_SCRIPT:-$BENCH_DIR/select1.sql}"
[ -n "${BENCH_SCRIPT:-}" ] || printf 'SELECT 1;\n' >"$SCRIPT"
BENCH_ROUTING="${BENCH_ROUTING:-}"
WORKLOAD=(-f "$SCRIPT")
PGS_ARGS=(--primary "postgres://app:app-secret@127.0.0.1:$FAKE_PORT/bench?sslmode=disable"
          --pool-mode transaction --pool-size 20)
case "$BENCH_ROUTING" in
    "") ;;
    none | read_your_writes | eventual)
        eval "$(bash "$REPO/scripts/cluster.sh" env)"
        url() { local hp="${1#postgres://*@}"; echo "postgres://app:app-secret@${hp%%/*}/bench?sslmode=disable"; }
        for v in PGSWITCH_TEST_PRIMARY PGSWITCH_TEST_REPLICA1 PGSWITCH_TEST_REPLICA2; do
            "$PG_BIN/pg_isready" -q -d "${!v}" -t 2 || die "cluster node ${!v} is down: bash scripts/cluster.sh up"
        done
        printf '\\set aid random(1, 100000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n' >"$BENCH_DIR/read.sql"
        printf '\\set aid random(1, 100000)\n\\set delta random(-5000, 5000)\nUPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n' >"$BENCH_DIR/write.sql"
        WORKLOAD=(-f "$BENCH_DIR/read.sql@9" -f "$BENCH_DIR/write.sql@1")
        conf="$BENCH_DIR/callgrind-routing.toml"
        {
            printf '[pgswitch]\npool_mode = "transaction"\npool_size = 20\nhealth_check_interval = "50ms"\n'
            [ "$BENCH_ROUTING" = none ] || printf 'consistency = "%s"\n' "$BENCH_ROUTING"
            printf '\n[[databases]]\nname = "bench"\nprimary = "%s"\n' "$(url "$PGSWITCH_TEST_PRIMARY")"
            [ "$BENCH_ROUTING" = none ] \
                || printf 'replicas = ["%s", "%s"]\n' "$(url "$PGSWITCH_TEST_REPLICA1")" "$(url "$PGSWITCH_TEST_REPLICA2")"
            printf '\n[[users]]\nname = "app"\npassword = "app-secret"\n'
        } >"$conf"
        PGS_ARGS=(--config "$conf")
        ;;
    *) die "BENCH_ROUTING must be none, read_your_writes or eventual (got '$BENCH_ROUTING')" ;;
esac

FAKE_PID="" PGS_PID=""
cleanup() {
    stop_pid "$PGS_PID" pgswitch
    stop_pid "$FAKE_PID" fake_pg
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -n "$BENCH_ROUTING" ] || start_fake_pg "$FAKE_PORT" "$BENCH_DIR/fake_pg.log"

# instructions TX_PER_CLIENT: total instructions of one pgswitch run.
instructions() {
    local out="$BENCH_DIR/callgrind.out" rc=0
    port_busy "$PGS_PORT" && die "port $PGS_PORT is already in use"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$PGSWITCH_BIN" --listen "127.0.0.1:$PGS_PORT" --workers 1 "${PGS_ARGS[@]}" >"$BENCH_DIR/callgrind-pgswitch.log" 2>&1 &
    PGS_PID=$!
    wait_port "$PGS_PORT" "$PGS_PID" pgswitch "$BENCH_DIR/callgrind-pgswitch.log" >&2 \
        || die "pgswitch did not start"
    "$PGBENCH" -n "${WORKLOAD[@]}" -M "$BENCH_MODE" -c "$CLIENTS" -j 1 -t "$1" \
        -h 127.0.0.1 -p "$PGS_PORT" -U app bench >"$BENCH_DIR/callgrind-pgbench.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -n 15 "$BENCH_DIR/callgrind-pgbench.out" >&2; die "pgbench failed"; }
    stop_pid "$PGS_PID" pgswitch >&2
    PGS_PID=""
    # Less the work whose amount depends on timing, which the short/long
    # difference cannot cancel: server logins (SCRAM key derivation alone
    # is millions of instructions; how many connections a run opens depends
    # on how its clients interleave), the monitor's probes and the function
    # catalog's reloads (each once a minute). Each function's cost is the
    # largest inclusive figure callgrind_annotate gives for it.
    local total background
    total="$(awk '/^(summary|totals):/ {print $2; exit}' "$out")"
    background="$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null | awk '
        function take(k) { gsub(",", "", $1); if ($1 + 0 > m[k]) m[k] = $1 + 0 }
        /pool::conn::ServerConn::attempt::\{\{closure\}\}/ { take("login") }
        /pool::health::spawn::\{\{closure\}\}/ { take("monitor") }
        /pool::watch::refresh_catalog::\{\{closure\}\}/ { take("catalog") }
        END { print m["login"] + m["monitor"] + m["catalog"] }')"
    echo $(( total - background ))
}

short="$(instructions "$SHORT")"
long="$(instructions "$LONG")"
per_tx=$(( (long - short) / (CLIENTS * (LONG - SHORT)) ))
echo "pgswitch $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'): $per_tx instructions per transaction (pgbench -M $BENCH_MODE, ${BENCH_ROUTING:+routing $BENCH_ROUTING, }$(basename "${WORKLOAD[1]%@*}"), $CLIENTS clients)"
