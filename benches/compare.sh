#!/usr/bin/env bash
# Side-by-side pgbench: direct primary vs PgBouncer vs pgswitch. NOT a test;
# numbers depend on the machine. Results: stdout and .bench/results.md
# (.bench/results-tls.md with BENCH_TLS=1).
#
#   benches/compare.sh
#   BENCH_TLS=1 benches/compare.sh      TLS on both sides of both poolers
#
# Environment:
#   BENCH_SECONDS  duration of each pgbench run (15)
#   POOL           server pool size of both poolers (20)
#   IDLE_CLIENTS   idle client connections for the memory test (2000; 0 = skip)
#   BENCH_SCALE    pgbench scale factor (10)
#   BENCH_BUILD    1 = cargo build --release first (default); 0 = use the existing binary
#   BENCH_ONLY     run only workloads whose name matches this grep -E pattern
#   BENCH_TLS      1 = TLS on both sides (default 0: plain TCP everywhere). pgbench
#                  (direct too) connects with PGSSLMODE=require; both poolers
#                  require TLS from clients (a throwaway self-signed certificate
#                  for 127.0.0.1/localhost, made with openssl in the PgBouncer
#                  work dir, tls/) and use sslmode=require to the primary
#                  (PgBouncer: server_tls_sslmode = require; pgswitch:
#                  sslmode=require in --primary). Runs only the select-only
#                  simple c=16 and reconnect (-C) workloads (BENCH_ONLY still
#                  filters them) and no idle-client test (idle_clients.py speaks
#                  plain TCP only). Before the workloads it checks, through each
#                  target, that the client connection and the server connection
#                  are TLS (psql \conninfo, pg_stat_ssl), and that a plain client
#                  is refused by the poolers.
#   PGBOUNCER_PORT / PGSWITCH_PORT  listen ports (16432 / 16433)
#   PGSWITCH_BIN   pgswitch binary (target/release/pgswitch)
#   PGBOUNCER_BIN  PgBouncer binary; default: PgBouncer 1.24 from Debian trixie
#                  (benches/pgbouncer-new.sh, for max_prepared_statements),
#                  else the system's pgbouncer
#
# Targets: (a) direct 127.0.0.1:15432, (b) PgBouncer (transaction mode),
# (c) target/release/pgswitch (transaction mode). A target whose binary is
# missing is skipped with a warning. Pooler CPU is utime+stime of the pooler
# process (all threads) from /proc/PID/stat, per processed transaction.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=benches/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

BENCH_SECONDS="${BENCH_SECONDS:-15}"
POOL="${POOL:-20}"
IDLE_CLIENTS="${IDLE_CLIENTS:-2000}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_BUILD="${BENCH_BUILD:-1}"
BENCH_TLS="${BENCH_TLS:-0}"
PGB_PORT="${PGBOUNCER_PORT:-16432}"
PGS_PORT="${PGSWITCH_PORT:-16433}"
BENCH_DIR="$REPO/.bench"
RESULTS="$BENCH_DIR/results.md"
[ "$BENCH_TLS" = 1 ] && RESULTS="$BENCH_DIR/results-tls.md"
PGSWITCH_BIN="${PGSWITCH_BIN:-$REPO/target/release/pgswitch}"
export PGPASSWORD=app-secret
if [ "$BENCH_TLS" = 1 ]; then
    # TLS everywhere: pgbench and psql to all targets, both poolers to the primary.
    export PGSSLMODE=require
    SERVER_SSLMODE=require
else
    # The cluster has ssl on; every connection here is plain, as the poolers' are.
    export PGSSLMODE=disable
    SERVER_SSLMODE=disable
fi
CLK_TCK="$(getconf CLK_TCK)"

mkdir -p "$BENCH_DIR"
raise_nofile
log "open-files limit: $(ulimit -n)"

# ------------------------------------------------------------ cleanup

PGB_PID="" PGS_PID="" IDLE_PID="" PGB_LAUNCHER_PID=""
cleanup() {
    stop_pid "$IDLE_PID" idle_clients.py
    stop_pid "$PGS_PID" pgswitch
    stop_pid "$PGB_PID" pgbouncer
    stop_pid "$PGB_LAUNCHER_PID" "pgbouncer launcher"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ prerequisites

ensure_pg_server
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
[ -x "$PGBENCH" ] || die "pgbench not found in $PG_BIN"

if ! command -v pgbouncer >/dev/null 2>&1; then
    apt_install pgbouncer
    # Debian's package starts its own pgbouncer service (localhost:6432);
    # stop that service, we run our own instance.
    if [ -x /etc/init.d/pgbouncer ]; then
        log "stopping the pgbouncer service started by the Debian package"
        service pgbouncer stop >/dev/null 2>&1 || true
    fi
fi
PGBOUNCER="$(command -v pgbouncer || true)"
[ -n "$PGBOUNCER" ] || { [ -x /usr/sbin/pgbouncer ] && PGBOUNCER=/usr/sbin/pgbouncer; } \
    || die "pgbouncer not found after installation"

bash "$REPO/scripts/cluster.sh" up >/dev/null
eval "$(bash "$REPO/scripts/cluster.sh" env)"
PRIMARY_PORT="${PGSWITCH_TEST_PRIMARY##*:}"; PRIMARY_PORT="${PRIMARY_PORT%%/*}"

if [ "$BENCH_BUILD" = 1 ]; then
    if ensure_cargo_on_path; then
        log "cargo build --release"
        cargo build --release
    else
        cargo_missing_hint
        warn "cannot build pgswitch; its target will be skipped unless $PGSWITCH_BIN exists"
    fi
fi

# pgbench tables in database bench (once).
app_psql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U app -d bench "$@"; }
branches="$(app_psql -tAc "SELECT CASE WHEN to_regclass('pgbench_branches') IS NULL THEN -1 ELSE 0 END")"
if [ "$branches" = 0 ]; then
    branches="$(app_psql -tAc "SELECT count(*) FROM pgbench_branches")"
fi
if [ "$branches" = "$BENCH_SCALE" ]; then
    log "pgbench tables already initialised (scale $BENCH_SCALE)"
else
    log "pgbench -i -s $BENCH_SCALE on bench (direct, port $PRIMARY_PORT)"
    "$PGBENCH" -i -s "$BENCH_SCALE" -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U app bench
fi

# ------------------------------------------------------------ helpers

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ------------------------------------------------------------ PgBouncer

PGB_DIR="$BENCH_DIR/pgbouncer"
if is_root; then
    mkdir -p "$PGB_DIR"
    chown postgres:postgres "$PGB_DIR"
    if ! runuser -u postgres -- test -w "$PGB_DIR"; then
        PGB_DIR=/tmp/pgswitch-bench-pgbouncer
        log "NOTE: postgres OS user cannot reach $BENCH_DIR; PgBouncer files go to $PGB_DIR"
        mkdir -p "$PGB_DIR"
        chown postgres:postgres "$PGB_DIR"
    fi
else
    mkdir -p "$PGB_DIR"
fi
chmod 0700 "$PGB_DIR"

# BENCH_TLS: a throwaway self-signed certificate the poolers present to
# pgbench (sslmode=require does not verify it). In $PGB_DIR so the postgres
# OS user (PgBouncer) can read it as well as pgswitch.
TLS_CERT="" TLS_KEY=""
if [ "$BENCH_TLS" = 1 ]; then
    command -v openssl >/dev/null 2>&1 || apt_install openssl || die "openssl is needed for BENCH_TLS=1"
    as_pg mkdir -p "$PGB_DIR/tls"
    TLS_CERT="$PGB_DIR/tls/pooler.crt" TLS_KEY="$PGB_DIR/tls/pooler.key"
    as_pg openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$TLS_KEY" -out "$TLS_CERT" >"$BENCH_DIR/openssl.log" 2>&1 \
        || { cat "$BENCH_DIR/openssl.log" >&2; die "openssl could not make the poolers' certificate"; }
    as_pg chmod 0600 "$TLS_KEY"
    log "TLS: poolers' certificate $TLS_CERT (P-256, CN=localhost, SAN 127.0.0.1/localhost)"
fi

# A PgBouncer with max_prepared_statements (>= 1.21) for the -M prepared
# rows; Debian bookworm's is 1.18.
if [ -n "${PGBOUNCER_BIN:-}" ]; then
    PGBOUNCER="$PGBOUNCER_BIN"
elif newer="$(bash "$REPO/benches/pgbouncer-new.sh" "$PGB_DIR/dist" | tail -n 1)" && [ -x "$newer" ]; then
    PGBOUNCER="$newer"
else
    warn "could not fetch a newer PgBouncer; using $PGBOUNCER"
fi

pgb_version="$("$PGBOUNCER" --version | head -n 1 | awk '{print $2}')"
prepared_line="; max_prepared_statements needs PgBouncer >= 1.21 (this is $pgb_version)"
if [ "$(printf '%s\n1.21\n' "$pgb_version" | sort -V | head -n 1)" = 1.21 ]; then
    prepared_line="max_prepared_statements = 200"
fi

as_pg tee "$PGB_DIR/userlist.txt" >/dev/null <<'EOF'
"app" "app-secret"
EOF
as_pg chmod 0600 "$PGB_DIR/userlist.txt"
as_pg tee "$PGB_DIR/pgbouncer.ini" >/dev/null <<EOF
; generated by benches/compare.sh
[databases]
bench = host=127.0.0.1 port=$PRIMARY_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
pool_mode = transaction
$(if [ "$BENCH_TLS" = 1 ]; then cat <<TLS
; BENCH_TLS=1: TLS on both sides, as pgswitch's --client-tls require and sslmode=require
client_tls_sslmode = require
client_tls_cert_file = $TLS_CERT
client_tls_key_file = $TLS_KEY
server_tls_sslmode = require
TLS
else cat <<PLAIN
; plain TCP on both sides, as pgswitch's sslmode=disable (the cluster has ssl on)
server_tls_sslmode = disable
PLAIN
fi)
default_pool_size = $POOL
max_client_conn = 6000
$prepared_line
ignore_startup_parameters = extra_float_digits
; connection logging would dominate the -C (reconnect) workload
log_connections = 0
log_disconnections = 0
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
EOF
# The .bench copies the brief asks for (readable next to results.md).
if [ "$PGB_DIR" != "$BENCH_DIR/pgbouncer" ]; then
    cp "$PGB_DIR/pgbouncer.ini" "$BENCH_DIR/pgbouncer.ini"
fi

log "starting PgBouncer $pgb_version on 127.0.0.1:$PGB_PORT (pool $POOL, transaction mode)"
start_pgbouncer "$PGBOUNCER" "$PGB_DIR" "$PGB_PORT"

# ------------------------------------------------------------ pgswitch

if [ -x "$PGSWITCH_BIN" ]; then
    port_busy "$PGS_PORT" && die "port $PGS_PORT is already in use"
    log "starting pgswitch on 127.0.0.1:$PGS_PORT (pool $POOL, transaction mode)"
    pgs_tls=()
    if [ "$BENCH_TLS" = 1 ]; then
        pgs_tls=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" --client-tls require)
    fi
    RUST_LOG=warn "$PGSWITCH_BIN" \
        --primary "postgres://app:app-secret@127.0.0.1:$PRIMARY_PORT/bench?sslmode=$SERVER_SSLMODE" \
        --listen "127.0.0.1:$PGS_PORT" --pool-mode transaction --pool-size "$POOL" \
        "${pgs_tls[@]}" >"$BENCH_DIR/pgswitch.log" 2>&1 &
    PGS_PID=$!
    if ! wait_port "$PGS_PORT" "$PGS_PID" pgswitch "$BENCH_DIR/pgswitch.log"; then
        warn "skipping the pgswitch target"
        stop_pid "$PGS_PID" pgswitch; PGS_PID=""
    fi
else
    warn "$PGSWITCH_BIN not found; skipping the pgswitch target (run cargo build --release)"
fi

# ------------------------------------------------------------ workloads

WORKLOADS=(
    "select-only simple c=16|-S -n -M simple -c 16"
    "select-only simple c=256|-S -n -M simple -c 256"
    "select-only extended c=16|-S -n -M extended -c 16"
    "select-only prepared c=16|-S -n -M prepared -c 16"
    "select-only prepared c=256|-S -n -M prepared -c 256"
    "select-only simple c=16 reconnect (-C)|-C -S -n -M simple -c 16"
    "TPC-B-like c=16|-c 16"
)
if [ "$BENCH_TLS" = 1 ]; then
    WORKLOADS=(
        "TLS select-only simple c=16|-S -n -M simple -c 16"
        "TLS select-only simple c=16 reconnect (-C)|-C -S -n -M simple -c 16"
    )
fi
TARGETS=("direct|$PRIMARY_PORT|")
TARGETS+=("pgbouncer|$PGB_PORT|$PGB_PID")
[ -n "$PGS_PID" ] && TARGETS+=("pgswitch|$PGS_PORT|$PGS_PID")

# BENCH_TLS: check, through each target, that TLS is really in use. The
# client side from psql's \conninfo; the server side from pg_stat_ssl of the
# backend that runs the query (for a pooler: one of its server connections).
# A plain client must be refused by the poolers (client TLS required).
TLS_CHECKS=()
if [ "$BENCH_TLS" = 1 ]; then
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r tname tport tpid <<<"$t"
        conninfo="$("$PSQL" -X -h 127.0.0.1 -p "$tport" -U app -d bench -c '\conninfo' 2>&1)" \
            || die "TLS check: psql (sslmode=require) via $tname failed: $conninfo"
        client_ssl="$(grep -o 'SSL connection (protocol: [^,]*, cipher: [^,]*' <<<"$conninfo" \
            | sed 's/^SSL connection (//; s/protocol: //; s/cipher: //')" \
            || die "TLS check: psql's connection via $tname is not TLS: $conninfo"
        server_ssl="$("$PSQL" -X -q -tA -F ' ' -h 127.0.0.1 -p "$tport" -U app -d bench \
            -c "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1)" \
            || die "TLS check: pg_stat_ssl via $tname failed: $server_ssl"
        case "$server_ssl" in
            "t "*) ;;
            *) die "TLS check: the server connection behind $tname is not TLS (pg_stat_ssl: $server_ssl)" ;;
        esac
        plain="n/a"
        if [ -n "$tpid" ]; then
            if PGSSLMODE=disable "$PSQL" -X -q -tA -h 127.0.0.1 -p "$tport" -U app -d bench \
                    -c 'SELECT 1' >"$BENCH_DIR/tls-plain-$tname.out" 2>&1; then
                die "TLS check: $tname accepted a plain (sslmode=disable) client"
            fi
            plain="refused: $(head -n 1 "$BENCH_DIR/tls-plain-$tname.out")"
        fi
        log "TLS check $tname: client $client_ssl; server ${server_ssl#t }; plain client $plain"
        TLS_CHECKS+=("| $tname | $client_ssl | ${server_ssl#t } | $plain |")
    done
fi

ROWS=()
FAILED=0
NOTE_CONN=0
wi=0
for w in "${WORKLOADS[@]}"; do
    wi=$(( wi + 1 ))
    wname="${w%%|*}"; read -r -a wargs <<<"${w#*|}"
    if [ -n "${BENCH_ONLY:-}" ] && ! grep -qE -- "$BENCH_ONLY" <<<"$wname"; then
        continue
    fi
    direct_tps=""
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r tname tport tpid <<<"$t"
        log "$wname -> $tname (${BENCH_SECONDS}s)"
        before=""; [ -n "$tpid" ] && before="$(cpu_ticks "$tpid")" ubefore="$(user_ticks "$tpid")"
        out="$BENCH_DIR/pgbench-${wi}-$tname.out"
        [ "$BENCH_TLS" = 1 ] && out="$BENCH_DIR/pgbench-tls-${wi}-$tname.out"
        rc=0
        "$PGBENCH" -h 127.0.0.1 -p "$tport" -U app -j 2 -T "$BENCH_SECONDS" "${wargs[@]}" bench \
            >"$out" 2>&1 || rc=$?
        after=""; [ -n "$tpid" ] && after="$(cpu_ticks "$tpid")" uafter="$(user_ticks "$tpid")"
        if ! pgbench_figures "$out" "$rc" "$tname"; then
            FAILED=1
            ROWS+=("| $wname | $tname | FAILED | - | - | - |")
            continue
        fi
        tps="$TPS" tx="$TX"
        [ "$tname" = direct ] && direct_tps="$tps"
        ratio="-"
        [ -n "$direct_tps" ] && ratio="$(ratio_of "$tps" "$direct_tps")"
        cpu="-" user="-"
        if [ -n "$tpid" ]; then
            cpu="$(cpu_per_tx "$before" "$after" "$tx")"
            user="$(cpu_per_tx "$ubefore" "$uafter" "$tx")"
        fi
        tps_fmt="$(awk -v a="$tps" 'BEGIN {printf "%.0f", a}')"
        # Connecting (SCRAM) many clients can eat much of a short run; flag it.
        conn_ms="$(awk '/^initial connection time = / {print $5; exit}' "$out")"
        if [ -n "$conn_ms" ] && awk -v c="$conn_ms" -v t="$BENCH_SECONDS" 'BEGIN {exit !(c > t * 250)}'; then
            tps_fmt="$tps_fmt *"
            NOTE_CONN=1
            warn "$tname: initial connection time ${conn_ms} ms is over 25% of the run; use a longer BENCH_SECONDS"
        fi
        ROWS+=("| $wname | $tname | $tps_fmt | $ratio | $cpu | $user |")
        log "  tps=$tps_fmt ratio=$ratio cpu_us_per_tx=$cpu user_us_per_tx=$user"
    done
done

# ------------------------------------------------------------ idle clients

MEM_ROWS=()
if [ "$BENCH_TLS" = 1 ] && [ "$IDLE_CLIENTS" -gt 0 ]; then
    log "BENCH_TLS=1: skipping the idle-client test (idle_clients.py speaks plain TCP only)"
elif [ "$IDLE_CLIENTS" -gt 0 ]; then
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r tname tport tpid <<<"$t"
        [ -n "$tpid" ] || continue   # poolers only
        rss0="$(rss_kb "$tpid")"
        log "idle memory: $IDLE_CLIENTS idle clients -> $tname"
        idle_out="$BENCH_DIR/idle-$tname.out"
        python3 "$REPO/benches/idle_clients.py" --host 127.0.0.1 --port "$tport" \
            -n "$IDLE_CLIENTS" --dbname bench --hold 3600 >"$idle_out" 2>&1 &
        IDLE_PID=$!
        deadline=$(( SECONDS + 180 ))
        ok=0
        while kill -0 "$IDLE_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            if grep -q '^ready ' "$idle_out"; then ok=1; break; fi
            sleep 0.2
        done
        if [ "$ok" = 1 ]; then
            rss1="$(rss_kb "$tpid")"
            per="$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CLIENTS" 'BEGIN {printf "%.1f", (b - a) / n}')"
            MEM_ROWS+=("| $tname | $IDLE_CLIENTS | $rss0 | $rss1 | $per |")
            log "  VmRSS $rss0 kB -> $rss1 kB = $per kB per idle client"
        else
            warn "idle clients against $tname did not all connect:"
            tail -n 5 "$idle_out" >&2
            MEM_ROWS+=("| $tname | $IDLE_CLIENTS | $rss0 | FAILED | - |")
            FAILED=1
        fi
        stop_pid "$IDLE_PID" idle_clients.py
        IDLE_PID=""
    done
fi

# ------------------------------------------------------------ report

cleanup
trap - EXIT

cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
{
    if [ "$BENCH_TLS" = 1 ]; then
        echo "# pgswitch vs PgBouncer vs direct, TLS on both sides"
        echo
        echo "$BENCH_SECONDS s per run, pgbench -j 2, scale $BENCH_SCALE, pool size $POOL, transaction mode."
        echo "TLS: pgbench sslmode=require to every target; both poolers require TLS from"
        echo "clients (self-signed P-256 certificate) and use sslmode=require to the primary."
    else
        echo "# pgswitch vs PgBouncer vs direct"
        echo
        echo "$BENCH_SECONDS s per run, pgbench -j 2, scale $BENCH_SCALE, pool size $POOL, transaction mode."
    fi
    echo
    echo "| workload | target | TPS | ratio to direct | pooler CPU µs/tx | of which user µs/tx |"
    echo "|---|---|---:|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Pooler CPU is the pooler process's utime+stime over the whole pgbench run divided by"
    echo "processed transactions; it includes authenticating pgbench's clients (SCRAM), which"
    echo "dominates the -C workload. The user part (utime) is the pooler's own code; the rest"
    echo "(stime) is the kernel's work for its system calls, mostly loopback TCP."
    if [ "$NOTE_CONN" = 1 ]; then
        echo "\\* pgbench's initial connection time exceeded 25% of the run: that TPS is unreliable."
    fi
    if [ "$BENCH_TLS" = 1 ]; then
        echo
        echo "In the -C workload each transaction is a new TLS handshake plus SCRAM login, so its"
        echo "TPS is connections per second and its CPU is pooler CPU per connection."
        echo
        echo "TLS checks before the runs (psql \\conninfo; pg_stat_ssl of the backend serving the query):"
        echo
        echo "| target | client side (protocol, cipher) | server side (ssl, version, cipher) | plain client |"
        echo "|---|---|---|---|"
        printf '%s\n' "${TLS_CHECKS[@]}"
    fi
    if [ "${#MEM_ROWS[@]}" -gt 0 ]; then
        echo
        echo "| pooler | idle clients | VmRSS before (kB) | VmRSS with clients (kB) | kB per idle client |"
        echo "|---|---:|---:|---:|---:|"
        printf '%s\n' "${MEM_ROWS[@]}"
    fi
    echo
    echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- pgbouncer: $("$PGBOUNCER" --version | head -n 1)"
    echo "- postgres: $("$PG_BIN/postgres" --version)"
    if [ -x "$PGSWITCH_BIN" ]; then
        echo "- pgswitch: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
    fi
} | tee "$RESULTS"
log "results written to $RESULTS"
[ "$FAILED" = 0 ] || die "some runs failed (see warnings above)"
