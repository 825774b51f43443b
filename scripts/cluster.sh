#!/usr/bin/env bash
# A real PostgreSQL primary + two streaming replicas on 127.0.0.1, for
# pgswitch's tests, benchmarks and local development.
#
#   scripts/cluster.sh up       create (first time) and/or start all nodes, wait until streaming;
#                               on an existing cluster it also adds what newer versions of
#                               this script set up (TLS material, ssl settings, pg_hba lines,
#                               roles), reloading nodes that were already running
#   scripts/cluster.sh down     stop all nodes (pg_ctl stop -m fast)
#   scripts/cluster.sh status   show each node's state
#   scripts/cluster.sh env      print `export PGSWITCH_TEST_...=` lines: eval "$(scripts/cluster.sh env)"
#   scripts/cluster.sh reset    down + delete the data directory
#   scripts/cluster.sh stop NODE [fast|immediate]
#                               stop one node (primary, replica1, replica2); `immediate`
#                               is `pg_ctl -m immediate` (SIGQUIT: no shutdown checkpoint,
#                               backends exit at once, the next start runs crash recovery)
#   scripts/cluster.sh start NODE
#                               start one node; waits until it accepts connections and,
#                               for a replica, until it streams from the primary again
#
# Environment:
#   PGSWITCH_PRIMARY_PORT / PGSWITCH_REPLICA1_PORT / PGSWITCH_REPLICA2_PORT  (15432/15433/15434)
#   PGSWITCH_CLUSTER_DIR   data + logs (default: <repo>/.cluster)
#   PG_BIN                 PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
#   PGSWITCH_CLUSTER_WAIT  seconds to wait for start-up/streaming (60)
#
# Roles: postgres (superuser, trust), replicator (replication, trust),
#        app / app-secret (SCRAM-SHA-256, owns databases app and bench),
#        app_md5 / md5-secret (md5 verifier, may use database app),
#        app_tls / tls-secret (SCRAM-SHA-256, may use database app; pg_hba
#        accepts it over TLS only: hostssl scram-sha-256, hostnossl reject).
#
# TLS: every node has ssl = on with a server certificate for localhost and
# 127.0.0.1 (subjectAltName), signed by a throwaway test CA. Files, made
# once with openssl and kept across `up`s (deleted by `reset`):
#   $CLUSTER_DIR/tls/ca.crt, ca.key          the test CA (verify-full against ca.crt)
#   $CLUSTER_DIR/tls/server.crt, server.key  the certificate all three nodes use
# Keys are mode 0600, owned by the postgres OS user when run as root.
#
# Files in $CLUSTER_DIR: primary/ replica1/ replica2/ (data dirs, also the
# Unix socket dirs), *.log (server logs), tls/, ports.env (the ports chosen
# at creation), .initialised.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WAIT_SECONDS="${PGSWITCH_CLUSTER_WAIT:-60}"
NODES=(primary replica1 replica2)

# ---------------------------------------------------------------- locations

# Can the postgres OS user reach (traverse) $1, or its nearest existing ancestor?
pg_can_traverse() {
    local p="$1"
    while [ ! -e "$p" ]; do p="$(dirname "$p")"; done
    runuser -u postgres -- test -x "$p" 2>/dev/null
}

resolve_cluster_dir() {
    local want="${PGSWITCH_CLUSTER_DIR:-$REPO/.cluster}"
    case "$want" in /*) ;; *) want="$PWD/$want" ;; esac
    local fallback=/tmp/pgswitch-cluster why=""
    if is_root && id postgres >/dev/null 2>&1 && ! pg_can_traverse "$want"; then
        why="the postgres OS user cannot traverse $want"
    elif [ $(( ${#want} + 24 )) -gt 100 ]; then
        # unix_socket_directories is each node's data dir; sun_path is ~107 bytes.
        why="$want is too long for a Unix socket path"
    fi
    if [ -n "$why" ] && [ "$want" != "$fallback" ]; then
        [ "${1:-}" = quiet ] || log "NOTE: $why; using $fallback instead"
        want="$fallback"
    fi
    CLUSTER_DIR="$want"
    PORTS_FILE="$CLUSTER_DIR/ports.env"
    INIT_MARKER="$CLUSTER_DIR/.initialised"
    TLS_DIR="$CLUSTER_DIR/tls"
}

# Ports are recorded when the cluster is created. A PGSWITCH_*_PORT override
# that disagrees with an existing cluster is an error for `up`/`env` (strict)
# and a warning otherwise (the running cluster's ports are used).
DEFAULT_PORTS=(15432 15433 15434)
ENV_PORTS=("${PGSWITCH_PRIMARY_PORT:-}" "${PGSWITCH_REPLICA1_PORT:-}" "${PGSWITCH_REPLICA2_PORT:-}")
declare -A PORT
load_ports() {
    local strict="${1:-}" i stored=("" "" "")
    if [ -f "$PORTS_FILE" ]; then
        local PRIMARY_PORT="" REPLICA1_PORT="" REPLICA2_PORT=""
        # shellcheck disable=SC1090
        . "$PORTS_FILE"
        stored=("$PRIMARY_PORT" "$REPLICA1_PORT" "$REPLICA2_PORT")
    fi
    for i in 0 1 2; do
        local n="${NODES[$i]}" p
        p="${ENV_PORTS[$i]:-${stored[$i]:-${DEFAULT_PORTS[$i]}}}"
        [[ "$p" =~ ^[0-9]+$ ]] || die "bad port for $n: '$p'"
        if [ -n "${stored[$i]}" ] && [ "${stored[$i]}" != "$p" ]; then
            local msg="$n was created with port ${stored[$i]} but port $p was requested"
            [ "$strict" = strict ] && die "$msg; run 'scripts/cluster.sh reset' first (or unset the PGSWITCH_*_PORT override)"
            warn "$msg; using ${stored[$i]}"
            p="${stored[$i]}"
        fi
        PORT[$n]="$p"
    done
}

datadir() { echo "$CLUSTER_DIR/$1"; }
logfile() { echo "$CLUSTER_DIR/$1.log"; }

url_app()   { echo "postgres://app:app-secret@127.0.0.1:${PORT[$1]}/app"; }
url_tls()   { echo "postgres://app_tls:tls-secret@127.0.0.1:${PORT[$1]}/app"; }

# ---------------------------------------------------------------- helpers

need_pg() {
    ensure_pg_server
    PSQL="$PG_BIN/psql"
    [ -x "$PSQL" ] || PSQL="$(command -v psql)" || die "psql not found"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user"
    fi
}

# psql as the superuser over TCP (trust from 127.0.0.1). Extra args follow.
su_psql() {
    local port="$1"; shift
    PGCONNECT_TIMEOUT=3 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# 0 = running, 3 = stopped, 4 = no (valid) data dir
node_state() {
    local rc=0
    as_pg "$PG_BIN/pg_ctl" -D "$(datadir "$1")" status >/dev/null 2>&1 || rc=$?
    return "$rc"
}

is_running() { node_state "$1"; }

start_node() {
    local n="$1" d; d="$(datadir "$n")"
    if is_running "$n"; then
        log "$n already running (port ${PORT[$n]})"
        return 0
    fi
    log "starting $n on 127.0.0.1:${PORT[$n]} (log: $(logfile "$n"))"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$d" -l "$(logfile "$n")" -w -t "$WAIT_SECONDS" start >/dev/null; then
        warn "$n failed to start; last lines of $(logfile "$n"):"
        tail -n 25 "$(logfile "$n")" >&2 || true
        die "could not start $n (is port ${PORT[$n]} already in use?)"
    fi
}

# stop_node NODE [MODE]: MODE is a pg_ctl shutdown mode, fast by default.
stop_node() {
    local n="$1" mode="${2:-fast}" rc=0
    node_state "$n" || rc=$?
    case "$rc" in
        0) log "stopping $n ($mode)"
           as_pg "$PG_BIN/pg_ctl" -D "$(datadir "$n")" -m "$mode" -w -t "$WAIT_SECONDS" stop >/dev/null ;;
        4) log "$n: not initialised" ;;
        *) log "$n already stopped" ;;
    esac
}

# poll CMD... until it succeeds or WAIT_SECONDS pass; $1 is a description.
wait_for() {
    local what="$1"; shift
    local deadline=$(( SECONDS + WAIT_SECONDS ))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.25
    done
    log "ok: $what"
}

accepts_connections() { su_psql "${PORT[$1]}" -d postgres -tAc 'SELECT 1' | grep -qx 1; }
streaming_is_2() {
    [ "$(su_psql "${PORT[primary]}" -d postgres -tAc \
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 2 ]
}
in_recovery() { [ "$(su_psql "${PORT[$1]}" -d postgres -tAc 'SELECT pg_is_in_recovery()')" = t ]; }
# reloaded_with_ssl NODE T: the node has reloaded its configuration since T
# (a pg_conf_load_time()) and has ssl on.
reloaded_with_ssl() {
    [ "$(su_psql "${PORT[$1]}" -d postgres -tAc \
        "SELECT pg_conf_load_time() > '$2'::timestamptz AND current_setting('ssl') = 'on'")" = t ]
}
receiver_streaming() {
    [ "$(su_psql "${PORT[$1]}" -d postgres -tAc \
        "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')")" = streaming ]
}

# ---------------------------------------------------------------- TLS

ensure_openssl() {
    command -v openssl >/dev/null 2>&1 && return 0
    apt_install openssl || die "could not install openssl"
    command -v openssl >/dev/null 2>&1 || die "openssl was installed but is not on PATH"
}

# Set to 1 by ensure_tls_material when it made a new server certificate.
TLS_CHANGED=0

# The throwaway test CA and the nodes' server certificate, in $TLS_DIR. Made
# once and kept: a missing CA means a new CA and a new server certificate; a
# missing server certificate or key is re-made and signed by the existing CA.
ensure_tls_material() {
    local ca_ok=0
    [ -s "$TLS_DIR/ca.crt" ] && [ -s "$TLS_DIR/ca.key" ] && ca_ok=1
    if [ "$ca_ok" = 1 ] && [ -s "$TLS_DIR/server.crt" ] && [ -s "$TLS_DIR/server.key" ]; then
        return 0
    fi
    ensure_openssl
    mkdir -p "$TLS_DIR"
    local tmp f
    # Made in a scratch dir beside the final files, then moved into place, so
    # an interrupted run leaves no half-made pair behind.
    tmp="$(mktemp -d "$TLS_DIR/.new.XXXXXX")"
    cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt             = no
[dn]
CN = pgswitch test
[v3_ca]
basicConstraints       = critical, CA:TRUE
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
[v3_server]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid, issuer
EOF
    if [ "$ca_ok" = 1 ]; then
        log "making a new server certificate (signed by the existing test CA in $TLS_DIR)"
    else
        log "making a throwaway test CA and server certificate in $TLS_DIR"
    fi
    # (Each step checks itself: set -e does not apply inside an `if` condition.)
    if ! (
        umask 077
        cd "$tmp" || exit 1
        if [ "$ca_ok" = 1 ]; then
            cp "$TLS_DIR/ca.crt" "$TLS_DIR/ca.key" . || exit 1
        else
            openssl req -x509 -new -config openssl.cnf -extensions v3_ca \
                -newkey rsa:2048 -nodes -sha256 -days 3650 \
                -subj "/CN=pgswitch test CA" -keyout ca.key -out ca.crt || exit 1
        fi
        openssl req -new -config openssl.cnf -newkey rsa:2048 -nodes -sha256 \
            -subj "/CN=localhost" -keyout server.key -out server.csr || exit 1
        serial="$(openssl rand -hex 16)" || exit 1
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key \
            -set_serial "0x$serial" -days 3650 -sha256 \
            -extfile openssl.cnf -extensions v3_server -out server.crt || exit 1
        openssl verify -CAfile ca.crt server.crt || exit 1
    ) >"$tmp/openssl.log" 2>&1; then
        cat "$tmp/openssl.log" >&2
        rm -rf "$tmp"
        die "could not make the TLS certificates with openssl"
    fi
    chmod 0644 "$tmp/ca.crt" "$tmp/server.crt"
    chmod 0600 "$tmp/ca.key" "$tmp/server.key"
    # PostgreSQL wants its key owned by the server's OS user, mode 0600.
    is_root && chown postgres:postgres "$TLS_DIR" "$tmp"/ca.* "$tmp"/server.*
    chmod 0755 "$TLS_DIR"
    for f in ca.key ca.crt server.key server.crt; do
        mv -f "$tmp/$f" "$TLS_DIR/$f"
    done
    rm -rf "$tmp"
    TLS_CHANGED=1
}

# ---------------------------------------------------------------- creation

prepare_cluster_dir() {
    mkdir -p "$CLUSTER_DIR"
    if is_root; then
        chown postgres:postgres "$CLUSTER_DIR"
        chmod 0750 "$CLUSTER_DIR"
        runuser -u postgres -- test -w "$CLUSTER_DIR" \
            || die "postgres OS user cannot write $CLUSTER_DIR (set PGSWITCH_CLUSTER_DIR elsewhere)"
    fi
}

# Set to 1 by write_node_conf / ensure_hba_tls when they change a node's files
# (so `up` knows to reload a node that is already running).
CONF_CHANGED=0
# Comment lines of write_node_conf's block; removed with the keys, so that rewriting
# the block leaves no duplicates.
RETRY_CONF_COMMENT="# Replicas reconnect to a restarted primary within a fraction of a second."
SSL_CONF_COMMENT="# TLS: server certificate signed by the test CA (see tls/ in the cluster dir)."

write_node_conf() {   # node-specific settings, in postgresql.auto.conf (last one wins)
    local n="$1" d; d="$(datadir "$n")"
    local f="$d/postgresql.auto.conf" tmp
    tmp="$(mktemp)"
    if [ -f "$f" ]; then
        grep -Ev "^[[:space:]]*(port|unix_socket_directories|cluster_name|wal_retrieve_retry_interval|ssl|ssl_cert_file|ssl_key_file)[[:space:]]*=" "$f" \
            | grep -Fxv -e "$RETRY_CONF_COMMENT" -e "$SSL_CONF_COMMENT" >"$tmp" || true
    fi
    cat >>"$tmp" <<EOF
port = ${PORT[$n]}
unix_socket_directories = '$d'
cluster_name = 'pgswitch-$n'
$RETRY_CONF_COMMENT
wal_retrieve_retry_interval = '200ms'
$SSL_CONF_COMMENT
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
EOF
    if [ -f "$f" ] && cmp -s "$tmp" "$f"; then
        rm -f "$tmp"
        return 0
    fi
    CONF_CHANGED=1
    cat "$tmp" >"$f"   # keep ownership/mode of the existing file
    rm -f "$tmp"
    is_root && chown postgres:postgres "$f"
    chmod 0600 "$f"
}

# pg_hba.conf lines for app_tls: TLS only. They must come before the generic
# `host all all` line (first match wins).
HBA_TLS_LINES="hostssl   all          app_tls     127.0.0.1/32   scram-sha-256
hostnossl all          app_tls     127.0.0.1/32   reject"

# Put HBA_TLS_LINES into NODE's pg_hba.conf, just before the first host* line
# for user `all`, dropping any other app_tls host* lines. No-op when already so.
ensure_hba_tls() {
    local n="$1" f tmp
    f="$(datadir "$n")/pg_hba.conf"
    [ -f "$f" ] || die "$n: $f is missing"
    tmp="$(mktemp)"
    awk -v lines="$HBA_TLS_LINES" '
        function put() { if (!done) { print lines; done = 1 } }
        $1 ~ /^host/ && $3 == "app_tls" { next }
        $1 ~ /^host/ && $3 == "all"     { put() }
        { print }
        END { put() }
    ' "$f" >"$tmp"
    if cmp -s "$tmp" "$f"; then
        rm -f "$tmp"
        return 0
    fi
    log "$n: adding the app_tls (TLS only) lines to pg_hba.conf"
    CONF_CHANGED=1
    cat "$tmp" >"$f"   # keep ownership/mode of the existing file
    rm -f "$tmp"
}

init_primary() {
    local d; d="$(datadir primary)"
    if [ -e "$d" ]; then
        warn "found an incomplete previous initialisation in $CLUSTER_DIR; recreating it"
        for n in replica2 replica1 primary; do
            [ -e "$(datadir "$n")" ] && { stop_node "$n" || true; }
        done
        rm -rf "$(datadir primary)" "$(datadir replica1)" "$(datadir replica2)"
    fi
    log "initdb primary in $d"
    as_pg "$PG_BIN/initdb" -D "$d" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$CLUSTER_DIR/initdb.log" 2>&1 \
        || { tail -n 20 "$CLUSTER_DIR/initdb.log" >&2; die "initdb failed"; }

    # Settings shared by all nodes (pg_basebackup copies postgresql.conf).
    as_pg tee -a "$d/postgresql.conf" >/dev/null <<'EOF'

# ---- pgswitch test cluster (scripts/cluster.sh) ----
# THROWAWAY TEST CLUSTER: fsync/full_page_writes/synchronous_commit are off
# for speed; a crash can corrupt it. Never copy these settings to production.
listen_addresses = '127.0.0.1'
max_connections = 400            # standbys need >= the primary's value
shared_buffers = 128MB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = off
# With synchronous_commit off, commits reach replicas when the WAL writer
# flushes; flush often so read-your-writes waits stay short in tests.
wal_writer_delay = 10ms
full_page_writes = off
password_encryption = 'scram-sha-256'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF

    as_pg tee "$d/pg_hba.conf" >/dev/null <<EOF
# pgswitch test cluster. Order matters: first match wins.
# TYPE  DATABASE     USER        ADDRESS        METHOD
local   all          all                        trust
host    replication  replicator  127.0.0.1/32   trust
host    all          postgres    127.0.0.1/32   trust
host    all          app_md5     127.0.0.1/32   md5
$HBA_TLS_LINES
host    all          all         127.0.0.1/32   scram-sha-256
EOF
    write_node_conf primary
}

create_roles() {
    log "creating roles and databases"
    su_psql "${PORT[primary]}" -d postgres <<'SQL'
CREATE ROLE replicator WITH LOGIN REPLICATION;
SET password_encryption = 'scram-sha-256';
CREATE ROLE app WITH LOGIN PASSWORD 'app-secret';
SET password_encryption = 'md5';
CREATE ROLE app_md5 WITH LOGIN PASSWORD 'md5-secret';
RESET password_encryption;
CREATE DATABASE app OWNER app;
CREATE DATABASE bench OWNER app;
GRANT CONNECT ON DATABASE app TO app_md5;
SQL
    su_psql "${PORT[primary]}" -d app -c 'GRANT ALL ON SCHEMA public TO app_md5;'
    # Sanity: the verifiers are of the intended kinds.
    local kinds
    kinds="$(su_psql "${PORT[primary]}" -d postgres -tAc \
        "SELECT string_agg(rolname || '=' || split_part(rolpassword, '\$', 1), ',' ORDER BY rolname)
           FROM pg_authid WHERE rolname IN ('app','app_md5')")"
    case "$kinds" in
        app=SCRAM-SHA-256,app_md5=md5*) ;;
        *) die "unexpected password verifiers: $kinds" ;;
    esac
}

# app_tls / tls-secret: SCRAM-SHA-256, may use database app (like app_md5).
# Idempotent: creates the role and grants only what is missing, so it also
# upgrades clusters made before app_tls existed.
ensure_tls_role() {
    local port="${PORT[primary]}" ok
    ok="$(su_psql "$port" -d app -tAc "
        SELECT coalesce((
            SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a
                            WHERE d.datname = 'app' AND a.grantee = r.oid
                              AND a.privilege_type = 'CONNECT')
               AND (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a
                     WHERE n.nspname = 'public' AND a.grantee = r.oid
                       AND a.privilege_type IN ('USAGE', 'CREATE')) = 2
              FROM pg_roles r WHERE r.rolname = 'app_tls'), false)")"
    if [ "$ok" != t ]; then
        log "creating role app_tls (TLS only) and its grants"
        su_psql "$port" -d app -1 <<'SQL'
SET password_encryption = 'scram-sha-256';
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_tls') THEN
        CREATE ROLE app_tls WITH LOGIN PASSWORD 'tls-secret';
    END IF;
END
$$;
GRANT CONNECT ON DATABASE app TO app_tls;
GRANT ALL ON SCHEMA public TO app_tls;
SQL
    fi
    local kind
    kind="$(su_psql "$port" -d postgres -tAc \
        "SELECT split_part(rolpassword, '\$', 1) FROM pg_authid WHERE rolname = 'app_tls'")"
    [ "$kind" = SCRAM-SHA-256 ] || die "unexpected password verifier for app_tls: '$kind'"
}

init_replica() {
    local n="$1" d; d="$(datadir "$n")"
    if [ -e "$d" ]; then
        warn "$n: incomplete previous clone in $d; recreating it"
        stop_node "$n" || true
        rm -rf "$d"
    fi
    # A leftover slot (from an interrupted clone) would make -C fail; its
    # walsender may take a moment to exit after the standby stopped.
    slot_gone_or_dropped() {
        [ "$(su_psql "${PORT[primary]}" -d postgres -tAc \
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$1' AND active")" = 0 ] || return 1
        su_psql "${PORT[primary]}" -d postgres -tAc \
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$1'" >/dev/null
    }
    wait_for "no leftover slot $n" slot_gone_or_dropped "$n" || die "replication slot $n is still in use"
    log "pg_basebackup $n from primary (slot $n)"
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "${PORT[primary]}" -U replicator \
        -D "$d" -R -X stream -C -S "$n" --checkpoint=fast --no-password \
        >"$CLUSTER_DIR/$n.basebackup.log" 2>&1 \
        || { tail -n 20 "$CLUSTER_DIR/$n.basebackup.log" >&2; die "pg_basebackup for $n failed"; }
    write_node_conf "$n"
    [ -f "$d/standby.signal" ] || die "$n: pg_basebackup -R did not write standby.signal"
    as_pg touch "$d/.pgswitch-clone-done"
}

# Bring an existing node's settings and pg_hba.conf up to date (TLS); call it
# before starting the node. A node that is already running is reloaded if
# anything changed (ssl and pg_hba.conf take effect on reload).
update_node() {
    local n="$1"
    CONF_CHANGED=0
    write_node_conf "$n"
    ensure_hba_tls "$n"
    if { [ "$CONF_CHANGED" = 1 ] || [ "$TLS_CHANGED" = 1 ]; } && is_running "$n"; then
        local before
        before="$(su_psql "${PORT[$n]}" -d postgres -tAc 'SELECT pg_conf_load_time()')" \
            || die "$n is running but does not accept connections; see $(logfile "$n")"
        log "reloading $n (configuration changed)"
        as_pg "$PG_BIN/pg_ctl" -D "$(datadir "$n")" reload >/dev/null
        wait_for "$n reloaded, ssl on" reloaded_with_ssl "$n" "$before" \
            || die "$n did not reload with ssl on; see $(logfile "$n")"
    fi
}

# ---------------------------------------------------------------- commands

cmd_up() {
    need_pg
    # Re-resolve: installing PostgreSQL may just have created the postgres user.
    resolve_cluster_dir quiet
    load_ports strict
    prepare_cluster_dir
    log "PostgreSQL: $("$PG_BIN/postgres" --version) ($PG_BIN); data: $CLUSTER_DIR"
    ensure_tls_material

    if [ ! -f "$INIT_MARKER" ]; then
        init_primary
        printf 'PRIMARY_PORT=%s\nREPLICA1_PORT=%s\nREPLICA2_PORT=%s\n' \
            "${PORT[primary]}" "${PORT[replica1]}" "${PORT[replica2]}" >"$PORTS_FILE"
        start_node primary
        wait_for "primary accepts connections" accepts_connections primary \
            || die "primary does not accept connections; see $(logfile primary)"
        create_roles
        ensure_tls_role
        : >"$INIT_MARKER"
    else
        # An existing cluster, possibly made by an older version of this script.
        update_node primary
        start_node primary
        wait_for "primary accepts connections" accepts_connections primary \
            || die "primary does not accept connections; see $(logfile primary)"
        ensure_tls_role
    fi

    for n in replica1 replica2; do
        if [ -f "$(datadir "$n")/.pgswitch-clone-done" ]; then
            update_node "$n"   # pg_hba.conf was cloned from an older primary, perhaps
        else
            init_replica "$n"
        fi
        start_node "$n"
    done

    for n in replica1 replica2; do
        wait_for "$n is in recovery" in_recovery "$n" \
            || die "$n is not answering as a standby; see $(logfile "$n")"
    done
    wait_for "2 replicas streaming" streaming_is_2 || {
        su_psql "${PORT[primary]}" -d postgres -c \
            'SELECT application_name, client_addr, state FROM pg_stat_replication' >&2 || true
        die "replicas are not both streaming after ${WAIT_SECONDS}s; see $CLUSTER_DIR/*.log"
    }

    cat <<EOF

pgswitch test cluster is up ($CLUSTER_DIR)
  primary   $(url_app primary)
  replica1  $(url_app replica1)
  replica2  $(url_app replica2)
  superuser postgres://postgres@127.0.0.1:${PORT[primary]}/app
  md5 user  postgres://app_md5:md5-secret@127.0.0.1:${PORT[primary]}/app
  TLS user  $(url_tls primary)  (TLS only, any node)
  TLS CA    $TLS_DIR/ca.crt  (sslmode=verify-full sslrootcert=...)
  logs      $CLUSTER_DIR/{primary,replica1,replica2}.log
Export them for tests with:  eval "\$(scripts/cluster.sh env)"
EOF
}

cmd_down() {
    if [ ! -d "$CLUSTER_DIR" ]; then
        log "no cluster at $CLUSTER_DIR; nothing to stop"
        return 0
    fi
    need_pg
    # Replicas first, so the primary's shutdown doesn't wait on walsenders.
    for n in replica2 replica1 primary; do stop_node "$n"; done
}

cmd_status() {
    if [ ! -f "$INIT_MARKER" ]; then
        echo "cluster: not initialised ($CLUSTER_DIR)"
        return 0
    fi
    need_pg
    echo "cluster: $CLUSTER_DIR"
    local n rc role extra all_up=1
    for n in "${NODES[@]}"; do
        rc=0; node_state "$n" || rc=$?
        extra=""
        case "$rc" in
            0)
                role="$(su_psql "${PORT[$n]}" -d postgres -tAc \
                    "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo '?')"
                if [ "$n" = primary ] && [ "$role" = primary ]; then
                    extra=", streaming replicas: $(su_psql "${PORT[$n]}" -d postgres -tAc \
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo '?')"
                elif [ "$role" = standby ]; then
                    extra=", wal receiver: $(su_psql "${PORT[$n]}" -d postgres -tAc \
                        "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')" 2>/dev/null || echo '?')"
                fi
                printf '  %-9s running  127.0.0.1:%s  %s%s\n' "$n" "${PORT[$n]}" "$role" "$extra" ;;
            4) all_up=0; printf '  %-9s missing  (no data dir %s)\n' "$n" "$(datadir "$n")" ;;
            *) all_up=0; printf '  %-9s stopped  127.0.0.1:%s\n' "$n" "${PORT[$n]}" ;;
        esac
    done
    [ "$all_up" = 1 ] || echo "(run 'scripts/cluster.sh up' to start)"
}

cmd_env() {
    cat <<EOF
export PGSWITCH_TEST_PRIMARY=$(url_app primary)
export PGSWITCH_TEST_REPLICA1=$(url_app replica1)
export PGSWITCH_TEST_REPLICA2=$(url_app replica2)
export PGSWITCH_TEST_SUPERUSER=postgres://postgres@127.0.0.1:${PORT[primary]}/app
export PGSWITCH_TEST_MD5=postgres://app_md5:md5-secret@127.0.0.1:${PORT[primary]}/app
export PGSWITCH_TEST_TLS_CA=$TLS_DIR/ca.crt
export PGSWITCH_TEST_TLS_USER=$(url_tls primary)
EOF
}

cmd_reset() {
    cmd_down
    if [ -d "$CLUSTER_DIR" ]; then
        log "deleting $CLUSTER_DIR"
        rm -rf "$CLUSTER_DIR"
    fi
}

# stop NODE [MODE] / start NODE: one node at a time (used by the restart and
# replica crash tests).
check_node() {
    case "${1:-}" in
        primary|replica1|replica2) ;;
        *) die "unknown node '${1:-}': use primary, replica1 or replica2" ;;
    esac
}
cmd_stop_node() {
    check_node "${1:-}"
    case "${2:-fast}" in
        fast|immediate) ;;
        *) die "unknown stop mode '${2:-}': use fast or immediate" ;;
    esac
    need_pg
    stop_node "$1" "${2:-fast}"
}
cmd_start_node() {
    check_node "${1:-}"
    need_pg
    # Also after a crash (a backend killed with SIGKILL), while the postmaster
    # restarts by itself: start_node sees it running, the waits below hold.
    start_node "$1"
    wait_for "$1 accepts connections" accepts_connections "$1" \
        || die "$1 did not accept connections within ${WAIT_SECONDS}s"
    if [ "$1" = primary ]; then
        # Leave the cluster as found: both replicas streaming again.
        wait_for "both replicas streaming" streaming_is_2 \
            || die "replicas did not resume streaming within ${WAIT_SECONDS}s"
    elif is_running primary; then
        # The same for a replica (after an immediate stop it replays WAL
        # first); a stopped primary is left for its own start to wait on.
        wait_for "$1 streaming" receiver_streaming "$1" \
            || die "$1 did not resume streaming within ${WAIT_SECONDS}s"
    fi
}

resolve_cluster_dir
case "${1:-}" in
    up|env) load_ports strict ;;
    *)      load_ports ;;
esac

case "${1:-}" in
    up)     cmd_up ;;
    down)   cmd_down ;;
    status) cmd_status ;;
    env)    cmd_env ;;
    reset)  cmd_reset ;;
    stop)   cmd_stop_node "${2:-}" "${3:-fast}" ;;
    start)  cmd_start_node "${2:-}" ;;
    *)      echo "usage: $0 up|down|status|env|reset|stop NODE [fast|immediate]|start NODE" >&2; exit 2 ;;
esac
