#!/usr/bin/env bash
# The serverless front, side by side in one run (NOT a test; numbers depend
# on the machine). One query (`SELECT $1::int`) per call, 16 concurrent
# callers, against the same pgswitch (transaction mode, pool 20):
#   http-keepalive   POST /sql, each caller on a keep-alive HTTP connection
#   http-connect     POST /sql on a new TCP connection per request
#   wire-connect     pgbench -C: a new wire connection (startup + SCRAM) per query
#   wire-pooled      pgbench: one wire connection per caller
# Reports calls per second, p50/p99 latency and pgswitch CPU per call
# (utime+stime of its process over the run). Results: stdout and
# .bench/serverless.md.
#
# Environment:
#   BENCH_SECONDS  duration of each run (10)
#   CALLERS        concurrent callers (16)
#   BENCH_BUILD    1 = cargo build --release first (default)
#   PGSWITCH_PORT / PGSWITCH_HTTP_PORT  listen ports (16433 / 16434)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=benches/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
CALLERS="${CALLERS:-16}"
BENCH_BUILD="${BENCH_BUILD:-1}"
PGS_PORT="${PGSWITCH_PORT:-16433}"
HTTP_PORT="${PGSWITCH_HTTP_PORT:-16434}"
BENCH_DIR="$REPO/.bench"
RESULTS="$BENCH_DIR/serverless.md"
CLK_TCK="$(getconf CLK_TCK)"
export PGPASSWORD=app-secret PGSSLMODE=disable
mkdir -p "$BENCH_DIR"
raise_nofile

PGS_PID=""
trap 'stop_pid "$PGS_PID" pgswitch' EXIT
trap 'exit 130' INT TERM

ensure_pg_server
PGBENCH="$PG_BIN/pgbench"
bash "$REPO/scripts/cluster.sh" up >/dev/null
eval "$(bash "$REPO/scripts/cluster.sh" env)"
PRIMARY_PORT="${PGSWITCH_TEST_PRIMARY##*:}"; PRIMARY_PORT="${PRIMARY_PORT%%/*}"

if [ "$BENCH_BUILD" = 1 ]; then
    ensure_cargo_on_path || { cargo_missing_hint; exit 1; }
    log "cargo build --release (pgswitch and the load generator)"
    cargo build --release --bin pgswitch --example http_load
fi
LOAD="$REPO/target/release/examples/http_load"
[ -x "$LOAD" ] || die "$LOAD is missing: run with BENCH_BUILD=1"

"$REPO/target/release/pgswitch" \
    --primary "postgres://app:app-secret@127.0.0.1:$PRIMARY_PORT/app?sslmode=disable" \
    --listen "127.0.0.1:$PGS_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
    --pool-mode transaction --pool-size 20 >"$BENCH_DIR/serverless-pgswitch.log" 2>&1 &
PGS_PID=$!
deadline=$(( SECONDS + 30 ))
until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PGS_PORT" -d app -U app -t 1; do
    kill -0 "$PGS_PID" 2>/dev/null || die "pgswitch exited; see $BENCH_DIR/serverless-pgswitch.log"
    [ "$SECONDS" -lt "$deadline" ] || die "pgswitch not ready after 30s"
    sleep 0.1
done

printf 'SELECT :n::int;\n' >"$BENCH_DIR/serverless-select.sql"

# run NAME COMMAND...: runs it under a CPU reading of pgswitch; the command
# prints "requests=N ... rps=R p50_us=A p99_us=B".
ROWS=()
run() {
    local name="$1"; shift
    local before after out
    before="$(cpu_ticks "$PGS_PID")"
    out="$("$@")"
    after="$(cpu_ticks "$PGS_PID")"
    local n rps p50 p99 errors
    n="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")"
    errors="$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$out")"
    rps="$(sed -n 's/.*rps=\([0-9]*\).*/\1/p' <<<"$out")"
    p50="$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$out")"
    p99="$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$out")"
    [ -n "$n" ] && [ "$n" -gt 0 ] || die "$name: no calls completed: $out"
    local cpu; cpu="$(cpu_per_tx "$before" "$after" "$n")"
    log "$name: $rps calls/s, p50 ${p50} µs, p99 ${p99} µs, pgswitch CPU ${cpu} µs/call, errors ${errors:-0}"
    ROWS+=("| $name | $rps | $p50 | $p99 | $cpu | ${errors:-0} |")
}

# pgbench with a per-transaction log, reduced to the load generator's line.
pgbench_line() {
    local logdir; logdir="$(mktemp -d)"
    (cd "$logdir" && "$PGBENCH" -n "$@" -c "$CALLERS" -j 2 -T "$BENCH_SECONDS" -D n=1 \
        -f "$BENCH_DIR/serverless-select.sql" -l -h 127.0.0.1 -p "$PGS_PORT" -U app app \
        >"$logdir/out" 2>&1) || { tail -n 5 "$logdir/out" >&2; rm -rf "$logdir"; return 1; }
    # Log lines: client tx latency_us ...; failed transactions are not logged.
    cat "$logdir"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v secs="$BENCH_SECONDS" '
        { v[NR] = $1 }
        END {
            p50 = v[int(NR * 0.50) + 1]; p99 = v[int(NR * 0.99) + 1]
            printf "requests=%d errors=0 rps=%d p50_us=%d p99_us=%d\n", NR, NR / secs, p50, p99
        }'
    rm -rf "$logdir"
}

log "warm-up"
"$LOAD" "127.0.0.1:$HTTP_PORT" 2 "$CALLERS" keepalive >/dev/null
pgbench_line >/dev/null

run http-keepalive "$LOAD" "127.0.0.1:$HTTP_PORT" "$BENCH_SECONDS" "$CALLERS" keepalive
run http-connect "$LOAD" "127.0.0.1:$HTTP_PORT" "$BENCH_SECONDS" "$CALLERS" connect
run wire-connect pgbench_line -C
run wire-pooled pgbench_line

{
    echo "## Serverless front: one query per call, $CALLERS callers, ${BENCH_SECONDS}s each"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, pgswitch $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "| workload | calls/s | p50 µs | p99 µs | pgswitch CPU µs/call | errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$RESULTS"
