#!/usr/bin/env bash
# Helpers shared by benches/compare.sh, ceiling.sh and routing.sh (sourced after
# scripts/lib.sh; PG_BIN must be set before wait_port/port_busy run).

stop_pid() {   # stop_pid PID NAME : TERM, wait up to 10s, then KILL
    local pid="$1" name="$2"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) did not exit; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

port_busy() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1 >/dev/null 2>&1; }

# wait_port PORT PID NAME LOG: poll pg_isready (bounded) while PID lives.
wait_port() {
    local port="$1" pid="$2" name="$3" logf="$4" deadline=$(( SECONDS + 30 ))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d bench -U app -t 1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            warn "$name exited during start-up; last lines of $logf:"
            tail -n 20 "$logf" >&2 || true
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "$name not accepting connections on $port after 30s; see $logf"
            return 1
        fi
        sleep 0.1
    done
    log "$name is accepting connections on 127.0.0.1:$port (pid $pid)"
}

# proc_ticks PID [user]: utime + stime (fields 14, 15) of PID, all threads;
# with "user", utime alone (the process's own code, not the kernel's).
proc_ticks() {
    local stat rest which="${2:-all}"
    stat="$(cat "/proc/$1/stat")"
    rest="${stat##*) }"           # drop "pid (comm) "; rest starts at field 3
    # shellcheck disable=SC2086
    set -- $rest
    if [ "$which" = user ]; then echo "${12}"; else echo $(( ${12} + ${13} )); fi
}
cpu_ticks() { proc_ticks "$1"; }
user_ticks() { proc_ticks "$1" user; }


# pgbench_figures OUT RC NAME: sets TPS and TX from the pgbench output in
# OUT; warns (with the output's tail) and returns 1 when the run failed.
pgbench_figures() {
    local out="$1" rc="$2" name="$3"
    TPS="$(awk '/^tps = / {print $3; exit}' "$out")"
    TX="$(awk -F': ' '/^number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}' "$out")"
    if [ "$rc" -ne 0 ] || [ -z "$TPS" ] || [ -z "$TX" ] || [ "$TX" = 0 ]; then
        warn "pgbench failed against $name (exit $rc); output:"
        tail -n 15 "$out" >&2
        return 1
    fi
    if grep -q 'number of failed transactions: [1-9]' "$out"; then
        warn "$name: $(grep 'number of failed transactions' "$out")"
    fi
}

# ratio_of A B: A / B with two decimals.
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# cpu_per_tx BEFORE AFTER TX: CPU microseconds per transaction from two
# cpu_ticks readings (needs CLK_TCK).
cpu_per_tx() {
    awk -v d="$(( $2 - $1 ))" -v hz="$CLK_TCK" -v n="$3" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}'
}

# start_pgbouncer BIN DIR PORT: runs PgBouncer with DIR/pgbouncer.ini (whose
# pidfile is DIR/pgbouncer.pid) and waits until it accepts connections on
# PORT. Sets PGB_PID, and PGB_LAUNCHER_PID when the launcher is another
# process (both for stop_pid). PgBouncer refuses to run as root: as root it
# runs as postgres. setpriv execs (so $! is pgbouncer itself); runuser
# forks, so the pid is read from the pidfile either way.
start_pgbouncer() {
    local bin="$1" dir="$2" port="$3" deadline
    port_busy "$port" && die "port $port is already in use (a leftover pgbouncer? see $dir/pgbouncer.pid)"
    rm -f "$dir/pgbouncer.pid"
    if is_root; then
        if command -v setpriv >/dev/null 2>&1; then
            setpriv --reuid=postgres --regid=postgres --init-groups \
                "$bin" "$dir/pgbouncer.ini" >>"$dir/pgbouncer.stderr" 2>&1 &
        else
            runuser -u postgres -- "$bin" "$dir/pgbouncer.ini" >>"$dir/pgbouncer.stderr" 2>&1 &
        fi
    else
        "$bin" "$dir/pgbouncer.ini" >>"$dir/pgbouncer.stderr" 2>&1 &
    fi
    PGB_LAUNCHER_PID=$!
    deadline=$(( SECONDS + 15 ))
    until [ -s "$dir/pgbouncer.pid" ]; do
        if ! kill -0 "$PGB_LAUNCHER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$dir/pgbouncer.stderr" "$dir/pgbouncer.log" >&2 2>/dev/null || true
            die "pgbouncer did not start"
        fi
        sleep 0.1
    done
    PGB_PID="$(cat "$dir/pgbouncer.pid")"
    [ "$PGB_PID" = "$PGB_LAUNCHER_PID" ] && PGB_LAUNCHER_PID=""
    wait_port "$port" "$PGB_PID" pgbouncer "$dir/pgbouncer.log" || die "pgbouncer is not usable"
}

# start_fake_pg PORT LOG: builds pgswitch and the fake server first when
# BENCH_BUILD=1, then runs benches/tools/fake_pg on PORT (one thread);
# sets FAKE_PID. Used by ceiling.sh and callgrind.sh.
start_fake_pg() {
    local port="$1" logf="$2" bin="$REPO/target/release/examples/fake_pg"
    if [ "$BENCH_BUILD" = 1 ]; then
        ensure_cargo_on_path || { cargo_missing_hint; exit 1; }
        log "cargo build --release (pgswitch and the fake server)"
        cargo build --release --bin pgswitch --example fake_pg
    fi
    [ -x "$bin" ] || die "$bin not found (BENCH_BUILD=1 builds it)"
    port_busy "$port" && die "port $port is already in use"
    "$bin" "127.0.0.1:$port" 1 >"$logf" 2>&1 &
    FAKE_PID=$!
    wait_port "$port" "$FAKE_PID" fake_pg "$logf" || die "fake_pg did not start"
}
