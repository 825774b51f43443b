#!/usr/bin/env bash
# Helpers shared by benches/compare.sh and benches/routing.sh (sourced after
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

cpu_ticks() {  # utime + stime (fields 14, 15) of PID, all threads
    local stat rest
    stat="$(cat "/proc/$1/stat")"
    rest="${stat##*) }"           # drop "pid (comm) "; rest starts at field 3
    # shellcheck disable=SC2086
    set -- $rest
    echo $(( ${12} + ${13} ))
}

