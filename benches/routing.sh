#!/usr/bin/env bash
# Side-by-side pgbench of read routing: a 90% read / 10% write mix against
# the primary directly and through pgswitch without replicas, with both
# replicas under read_your_writes, and with both replicas under eventual
# consistency. NOT a test; numbers depend on the machine. Results: stdout,
# and appended (with a dated header) to .bench/routing.md.
#
#   benches/routing.sh                    # 15 s per run, 8 runs
#   BENCH_SECONDS=3 benches/routing.sh    # quick look
#
# Needs target/release/pgswitch (cargo build --release; this script does not
# build) and the scripts/cluster.sh cluster (nodes that are down are started,
# and only those are stopped again on exit). The pgbench tables in database
# bench are created (pgbench -i) only if missing or if BENCH_SCALE asks for
# another scale. pgbench gets -s SCALE: with only -f scripts, :scale would
# otherwise be 1 and the reads would touch a tenth of the accounts.
#
# Environment:
#   BENCH_SECONDS   duration of each pgbench run (15)
#   BENCH_SCALE     pgbench scale; default: that of the existing tables (10 if none)
#   IDLE_SECONDS    idle window before each run that measures background
#                   transactions (pgswitch's monitor) to subtract (2)
#   ROUTING_NOREPLICA_PORT / ROUTING_RYW_PORT / ROUTING_EVENTUAL_PORT
#                   pgswitch listen ports (16440 / 16441 / 16442)
#   PGSWITCH_BIN    pgswitch binary (target/release/pgswitch)
#   RUST_LOG        pgswitch log level (warn); logs: .bench/routing-*.log
#
# Workload: -f read.sql@9 -f write.sql@1 -c 16 -j 2 -n, in -M simple and
# -M extended (scripts written to .bench/). Each pgswitch target is started
# and stopped twice per run: once idle (IDLE_SECONDS), once for pgbench.
#
# Columns:
#   pooler CPU µs/tx  utime+stime of pgswitch (all threads, /proc/PID/stat)
#                     over the pgbench run / transactions pgbench processed.
#   replica share     transactions committed in database bench on the two
#                     standbys / on all three servers (pg_stat_database
#                     xact_commit deltas; a standby counts its own read
#                     transactions). Counts are read only after the pooler
#                     has stopped and all its server connections are gone:
#                     PostgreSQL publishes a backend's counts at most once a
#                     second, an idle one's ~10s later, and those of a
#                     backend that never touches a table (pgswitch's
#                     monitor) only when it exits.
#                     pgswitch's monitor runs its probes in bench too (one
#                     query per server per health_check_interval, 50ms here;
#                     tokio-postgres makes that ~2 transactions: prepare +
#                     execute, so ~35-40/s per server). Before each run the
#                     same pgswitch is started idle for IDLE_SECONDS and
#                     stopped; its per-server rate (transactions / pgswitch
#                     lifetime) times the run's pgswitch lifetime is
#                     subtracted, per server, floored at 0.
#   server xacts      those corrected deltas per server (primary / replica
#                     1 / replica 2); their sum next to pgbench's count shows
#                     what else the pooler runs on the servers (its server
#                     logins each count one; the rest is correction noise).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=benches/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

BENCH_SECONDS="${BENCH_SECONDS:-15}"
BENCH_SCALE="${BENCH_SCALE:-}"
IDLE_SECONDS="${IDLE_SECONDS:-2}"
PORT_NOREP="${ROUTING_NOREPLICA_PORT:-16440}"
PORT_RYW="${ROUTING_RYW_PORT:-16441}"
PORT_EVENTUAL="${ROUTING_EVENTUAL_PORT:-16442}"
POOL=20
CLIENTS=16
BENCH_DIR="$REPO/.bench"
RESULTS="$BENCH_DIR/routing.md"
PGSWITCH_BIN="${PGSWITCH_BIN:-$REPO/target/release/pgswitch}"
export PGPASSWORD=app-secret
export RUST_LOG="${RUST_LOG:-warn}"
CLK_TCK="$(getconf CLK_TCK)"

for v in BENCH_SECONDS IDLE_SECONDS PORT_NOREP PORT_RYW PORT_EVENTUAL; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
[ "$BENCH_SECONDS" -gt 0 ] || die "BENCH_SECONDS must be above 0"
[ "$IDLE_SECONDS" -gt 0 ] || die "IDLE_SECONDS must be above 0"
for p in "$PORT_NOREP" "$PORT_RYW" "$PORT_EVENTUAL"; do
    if [ "$p" -lt 1024 ] || [ "$p" -ge 32768 ]; then
        die "port $p: use 1024-32767 (below the ephemeral range)"
    fi
done
[ -z "$BENCH_SCALE" ] || [[ "$BENCH_SCALE" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SCALE must be a positive number"

mkdir -p "$BENCH_DIR"
raise_nofile

# ------------------------------------------------------------ cleanup

PGS_PID="" PGS_NAME="" PGS_T0="" STARTED_NODES=()
cleanup() {
    stop_pid "$PGS_PID" "$PGS_NAME"
    PGS_PID=""
    # Only the cluster nodes this script started (replicas before the primary).
    local i n
    for (( i = ${#STARTED_NODES[@]} - 1; i >= 0; i-- )); do
        n="${STARTED_NODES[$i]}"
        log "stopping cluster node $n (started by this script)"
        bash "$REPO/scripts/cluster.sh" stop "$n" >/dev/null || warn "scripts/cluster.sh stop $n failed"
    done
    STARTED_NODES=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ prerequisites

[ -x "$PGSWITCH_BIN" ] || die "$PGSWITCH_BIN not found; build it first: cargo build --release"
ensure_pg_server
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
[ -x "$PGBENCH" ] || die "pgbench not found in $PG_BIN"
[ -x "$PSQL" ] || die "psql not found in $PG_BIN"

# Which nodes are down now (captured first: `status | grep -q` would be
# SIGPIPE-prone under pipefail).
cluster_status="$(bash "$REPO/scripts/cluster.sh" status 2>/dev/null || true)"
down_nodes=()
for n in primary replica1 replica2; do
    grep -Eq "^  $n +running " <<<"$cluster_status" || down_nodes+=("$n")
done
if [ "${#down_nodes[@]}" -gt 0 ]; then
    log "cluster node(s) down: ${down_nodes[*]}; running scripts/cluster.sh up (they are stopped again on exit)"
    STARTED_NODES=("${down_nodes[@]}")
    bash "$REPO/scripts/cluster.sh" up >/dev/null
else
    log "cluster is up (scripts/cluster.sh status)"
fi
eval "$(bash "$REPO/scripts/cluster.sh" env)"
port_of() { local p="${1##*:}"; echo "${p%%/*}"; }
PRIMARY_PORT="$(port_of "$PGSWITCH_TEST_PRIMARY")"
REPLICA1_PORT="$(port_of "$PGSWITCH_TEST_REPLICA1")"
REPLICA2_PORT="$(port_of "$PGSWITCH_TEST_REPLICA2")"
SERVERS=("$PRIMARY_PORT" "$REPLICA1_PORT" "$REPLICA2_PORT")

app_psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U app -d bench "$@"; }
# superuser psql (trust on 127.0.0.1), connected to database postgres so
# that these queries do not count in bench's pg_stat_database row.
su_psql() {
    local port="$1"; shift
    PGCONNECT_TIMEOUT=5 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# pgbench tables in database bench: the existing ones, or pgbench -i.
have="$(app_psql -tAc "SELECT CASE WHEN to_regclass('pgbench_branches') IS NULL
                                     OR to_regclass('pgbench_accounts') IS NULL THEN -1 ELSE 0 END")" \
    || die "cannot query database bench on 127.0.0.1:$PRIMARY_PORT as app"
[ "$have" = 0 ] && have="$(app_psql -tAc "SELECT count(*) FROM pgbench_branches")"
if [ "$have" -gt 0 ] && { [ -z "$BENCH_SCALE" ] || [ "$have" = "$BENCH_SCALE" ]; }; then
    BENCH_SCALE="$have"
    log "using the existing pgbench tables in bench (scale $BENCH_SCALE)"
else
    BENCH_SCALE="${BENCH_SCALE:-10}"
    log "pgbench -i -s $BENCH_SCALE on bench (direct, port $PRIMARY_PORT)"
    "$PGBENCH" -i -s "$BENCH_SCALE" -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U app bench \
        || die "pgbench -i failed; create the tables with benches/compare.sh or pgbench -i -s 10 bench"
fi

# ------------------------------------------------------------ helpers

# snapshot: "EPOCH_SECONDS XACT_PRIMARY XACT_REPLICA1 XACT_REPLICA2"
# (xact_commit of database bench on each server).
snapshot() {
    local port n out
    out="$(date +%s.%N)"
    for port in "${SERVERS[@]}"; do
        n="$(su_psql "$port" -tAc \
            "SELECT coalesce((SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'), 0)")" \
            || die "cannot read pg_stat_database on 127.0.0.1:$port as postgres"
        out="$out $n"
    done
    echo "$out"
}

# Client backends connected to bench on every server; wait (bounded) until
# none is left, so that their transaction counts have been published.
wait_bench_idle() {
    local deadline=$(( SECONDS + 15 )) port n total
    while :; do
        total=0
        for port in "${SERVERS[@]}"; do
            n="$(su_psql "$port" -tAc "SELECT count(*) FROM pg_stat_activity
                                        WHERE datname = 'bench' AND backend_type = 'client backend'")" || n=0
            total=$(( total + n ))
        done
        [ "$total" = 0 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "$total client backend(s) still connected to bench after 15s; the replica share may be off"
            return 0
        fi
        sleep 0.1
    done
}

# Both standbys have replayed the primary's WAL as of now (bounded), so no
# run starts with a lagging replica left over from the previous one.
wait_caught_up() {
    local lsn deadline=$(( SECONDS + 30 )) port ok
    lsn="$(su_psql "$PRIMARY_PORT" -tAc "SELECT pg_current_wal_flush_lsn()")"
    for port in "$REPLICA1_PORT" "$REPLICA2_PORT"; do
        until ok="$(su_psql "$port" -tAc "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" && [ "$ok" = t ]; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                warn "replica on port $port has not replayed up to $lsn after 30s"
                return 0
            fi
            sleep 0.1
        done
    done
}

now() { date +%s.%N; }

# start_pgswitch NAME PORT ARGS... : sets PGS_PID / PGS_NAME, or fails.
start_pgswitch() {
    local name="$1" port="$2"; shift 2
    local logf="$BENCH_DIR/routing-$name.log"
    port_busy "$port" && die "port $port is already in use (set ROUTING_*_PORT)"
    "$PGSWITCH_BIN" "$@" >>"$logf" 2>&1 &
    PGS_PID=$! PGS_NAME="pgswitch ($name)"
    if ! wait_port "$port" "$PGS_PID" "$PGS_NAME" "$logf"; then
        stop_pid "$PGS_PID" "$PGS_NAME"; PGS_PID=""
        return 1
    fi
}

write_config() {  # write_config FILE PORT CONSISTENCY
    cat >"$1" <<EOF
# generated by benches/routing.sh
[pgswitch]
listen = "127.0.0.1:$2"
pool_mode = "transaction"
pool_size = $POOL
health_check_interval = "50ms"
consistency = "$3"

[[databases]]
name = "bench"
primary = "postgres://app:app-secret@127.0.0.1:$PRIMARY_PORT/bench?sslmode=disable"
replicas = [
  "postgres://app:app-secret@127.0.0.1:$REPLICA1_PORT/bench?sslmode=disable",
  "postgres://app:app-secret@127.0.0.1:$REPLICA2_PORT/bench?sslmode=disable",
]

[[users]]
name = "app"
password = "app-secret"
EOF
    "$PGSWITCH_BIN" check-config "$1" >/dev/null || die "pgswitch rejects $1 (see above)"
}

# ------------------------------------------------------------ workload files

cat >"$BENCH_DIR/read.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
cat >"$BENCH_DIR/write.sql" <<'EOF'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
EOF
CONF_RYW="$BENCH_DIR/routing-read_your_writes.toml"
CONF_EVENTUAL="$BENCH_DIR/routing-eventual.toml"
write_config "$CONF_RYW" "$PORT_RYW" read_your_writes
write_config "$CONF_EVENTUAL" "$PORT_EVENTUAL" eventual

# name|port|how to start ("" = nothing to start)
TARGETS=(
    "direct|$PRIMARY_PORT|"
    "pgswitch, no replicas|$PORT_NOREP|norep"
    "pgswitch, read_your_writes|$PORT_RYW|$CONF_RYW"
    "pgswitch, eventual|$PORT_EVENTUAL|$CONF_EVENTUAL"
)

# launch_target HOW NAME PORT : start the pgswitch target HOW describes
# (norep, or a config file); sets PGS_T0 (launch time).
launch_target() {
    local how="$1" name="$2" port="$3"
    PGS_T0="$(now)"
    if [ "$how" = norep ]; then
        start_pgswitch "$name" "$port" \
            --primary "postgres://app:app-secret@127.0.0.1:$PRIMARY_PORT/bench?sslmode=disable" \
            --pool-mode transaction --pool-size "$POOL" --listen "127.0.0.1:$port"
    else
        start_pgswitch "$name" "$port" --config "$how"
    fi
}

# ------------------------------------------------------------ runs

ROWS=()
FAILED=0
NOTE_CONN=0
for mode in simple extended; do
    direct_tps=""
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r tname tport tstart <<<"$t"
        slug="$(echo "$tname" | tr -c 'a-z0-9_\n' '-' | tr -s '-')"
        fail_row="| $mode | $tname | FAILED | - | - | - | - |"
        wait_caught_up
        wait_bench_idle

        # Background rate: the same pgswitch, idle, from launch to exit.
        rate="0 0 0"
        if [ -n "$tstart" ]; then
            s0="$(snapshot)"
            launch_target "$tstart" "$slug" "$tport" || { FAILED=1; ROWS+=("$fail_row"); continue; }
            sleep "$IDLE_SECONDS"
            stop_pid "$PGS_PID" "$PGS_NAME"; PGS_PID=""
            t1="$(now)"
            wait_bench_idle
            s1="$(snapshot)"
            rate="$(awk -v s0="$s0" -v s1="$s1" -v t0="$PGS_T0" -v t1="$t1" 'BEGIN {
                split(s0, a, " "); split(s1, b, " "); life = t1 - t0
                printf "%.3f %.3f %.3f\n", (b[2] - a[2]) / life, (b[3] - a[3]) / life, (b[4] - a[4]) / life
            }')"
        fi

        s1="$(snapshot)"
        if [ -n "$tstart" ]; then
            launch_target "$tstart" "$slug" "$tport" || { FAILED=1; ROWS+=("$fail_row"); continue; }
        fi
        t0="${PGS_T0:-}"
        log "$mode: $tname (${BENCH_SECONDS}s)"
        before=""; [ -n "$PGS_PID" ] && before="$(cpu_ticks "$PGS_PID")"
        out="$BENCH_DIR/routing-$mode-$slug.out"
        rc=0
        [ -n "$tstart" ] || t0="$(now)"
        "$PGBENCH" -h 127.0.0.1 -p "$tport" -U app -n -M "$mode" -s "$BENCH_SCALE" \
            -c "$CLIENTS" -j 2 -T "$BENCH_SECONDS" \
            -f "$BENCH_DIR/read.sql@9" -f "$BENCH_DIR/write.sql@1" bench >"$out" 2>&1 || rc=$?
        after=""; [ -n "$PGS_PID" ] && after="$(cpu_ticks "$PGS_PID")"
        # Stop the pooler: its server connections exit and publish their counts.
        stop_pid "$PGS_PID" "$PGS_NAME"; PGS_PID=""
        t1="$(now)"
        wait_bench_idle
        s2="$(snapshot)"

        if ! pgbench_figures "$out" "$rc" "$tname"; then
            FAILED=1
            ROWS+=("$fail_row")
            continue
        fi
        tps="$TPS" tx="$TX"
        [ "$tname" = direct ] && direct_tps="$tps"
        ratio="-"
        [ -n "$direct_tps" ] && ratio="$(ratio_of "$tps" "$direct_tps")"
        cpu="-"
        if [ -n "$before" ] && [ -n "$after" ]; then
            cpu="$(cpu_per_tx "$before" "$after" "$tx")"
        fi
        # Per server: run delta minus (idle rate x pgswitch lifetime), floored at 0.
        read -r share p r1 r2 <<<"$(awk -v r="$rate" -v s1="$s1" -v s2="$s2" -v t0="$t0" -v t1="$t1" 'BEGIN {
            split(r, a, " "); split(s1, b, " "); split(s2, c, " ")
            life = t1 - t0; sum = 0
            for (i = 2; i <= 4; i++) {
                x[i] = (c[i] - b[i]) - a[i - 1] * life
                if (x[i] < 0) x[i] = 0
                sum += x[i]
            }
            share = sum > 0 ? sprintf("%.1f%%", 100 * (x[3] + x[4]) / sum) : "-"
            printf "%s %.0f %.0f %.0f\n", share, x[2], x[3], x[4]
        }')"
        tps_fmt="$(awk -v a="$tps" 'BEGIN {printf "%.0f", a}')"
        conn_ms="$(awk '/^initial connection time = / {print $5; exit}' "$out")"
        if [ -n "$conn_ms" ] && awk -v c="$conn_ms" -v t="$BENCH_SECONDS" 'BEGIN {exit !(c > t * 250)}'; then
            tps_fmt="$tps_fmt *"
            NOTE_CONN=1
            warn "$tname: initial connection time ${conn_ms} ms is over 25% of the run; use a longer BENCH_SECONDS"
        fi
        ROWS+=("| $mode | $tname | $tps_fmt | $ratio | $cpu | $share | $p / $r1 / $r2 (pgbench: $tx) |")
        log "  tps=$tps_fmt ratio=$ratio cpu_us_per_tx=$cpu replica_share=$share xacts=$p/$r1/$r2 pgbench_tx=$tx (background/s: $rate)"
    done
done

# ------------------------------------------------------------ report

cleanup

cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
{
    echo
    echo "## $(date -u '+%Y-%m-%d %H:%M:%S UTC') — read routing"
    echo
    echo "pgbench -f read.sql@9 -f write.sql@1 -c $CLIENTS -j 2 -n, $BENCH_SECONDS s per run, scale $BENCH_SCALE;"
    echo "pgswitch: transaction mode, pool size $POOL; with replicas, health_check_interval 50ms."
    echo
    echo "| mode | target | TPS | vs direct | pooler CPU µs/tx | replica share | server xacts primary / r1 / r2 |"
    echo "|---|---|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Replica share: xact_commit deltas of database bench on the standbys / on all three servers,"
    echo "read after the pooler stopped, minus each server's background rate (pgswitch's monitor:"
    echo "~2 transactions per probe, a probe per server every 50ms) measured by running the same"
    echo "pgswitch idle for ${IDLE_SECONDS}s just before the run, times the run's pgswitch lifetime."
    echo "Pooler CPU: utime+stime of pgswitch over the run / pgbench transactions (includes SCRAM logins)."
    if [ "$NOTE_CONN" = 1 ]; then
        echo "\\* pgbench's initial connection time exceeded 25% of the run: that TPS is unreliable."
    fi
    echo
    echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}"
    echo "- postgres: $("$PG_BIN/postgres" --version)"
    echo "- pgswitch: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown) ($PGSWITCH_BIN)"
} | tee -a "$RESULTS"
log "results appended to $RESULTS"
[ "$FAILED" = 0 ] || die "some runs failed (see warnings above)"
