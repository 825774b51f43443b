#!/usr/bin/env bash
# Instructions per transaction spent by pgswitch, counted by valgrind's
# callgrind: repeatable to a fraction of a percent on a noisy machine, so
# the way to compare two commits of the same code. pgswitch (--workers 1)
# runs under callgrind in front of the fake server (benches/tools/fake_pg.rs)
# twice, for a short and a long pgbench run (8 clients); the difference
# over the difference in transactions cancels start-up and shutdown.
#
#   bash benches/callgrind.sh                 # SELECT 1, simple protocol
#   BENCH_MODE=prepared bash benches/callgrind.sh
#   BENCH_SCRIPT=benches/tools/tpcb-like.sql bash benches/callgrind.sh
#
# Environment:
#   BENCH_MODE      pgbench -M: simple, extended or prepared (simple)
#   BENCH_SCRIPT    a pgbench script (default: SELECT 1)
#   BENCH_BUILD     1 = cargo build --release first (default); 0 = use the binaries
#   PGSWITCH_BIN    the binary to measure (default target/release/pgswitch)
#   FAKE_PORT / PGSWITCH_PORT   ports (16453 / 16454)
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

FAKE_PID="" PGS_PID=""
cleanup() {
    stop_pid "$PGS_PID" pgswitch
    stop_pid "$FAKE_PID" fake_pg
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_fake_pg "$FAKE_PORT" "$BENCH_DIR/fake_pg.log"

# instructions TX_PER_CLIENT: total instructions of one pgswitch run.
instructions() {
    local out="$BENCH_DIR/callgrind.out" rc=0
    port_busy "$PGS_PORT" && die "port $PGS_PORT is already in use"
    RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$PGSWITCH_BIN" --listen "127.0.0.1:$PGS_PORT" --workers 1 \
        --primary "postgres://app:app-secret@127.0.0.1:$FAKE_PORT/bench?sslmode=disable" \
        --pool-mode transaction --pool-size 20 >"$BENCH_DIR/callgrind-pgswitch.log" 2>&1 &
    PGS_PID=$!
    wait_port "$PGS_PORT" "$PGS_PID" pgswitch "$BENCH_DIR/callgrind-pgswitch.log" >&2 \
        || die "pgswitch did not start"
    "$PGBENCH" -n -f "$SCRIPT" -M "$BENCH_MODE" -c "$CLIENTS" -j 1 -t "$1" \
        -h 127.0.0.1 -p "$PGS_PORT" -U app bench >"$BENCH_DIR/callgrind-pgbench.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -n 15 "$BENCH_DIR/callgrind-pgbench.out" >&2; die "pgbench failed"; }
    stop_pid "$PGS_PID" pgswitch >&2
    PGS_PID=""
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

short="$(instructions "$SHORT")"
long="$(instructions "$LONG")"
per_tx=$(( (long - short) / (CLIENTS * (LONG - SHORT)) ))
echo "pgswitch $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'): $per_tx instructions per transaction (pgbench -M $BENCH_MODE, $(basename "$SCRIPT"), $CLIENTS clients)"
