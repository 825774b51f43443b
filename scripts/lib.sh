# shellcheck shell=bash
# Shared helpers for pgswitch's scripts. Source it; do not execute it.
#   REPO      absolute path of the repository root
#   log/warn  messages on stderr, prefixed with the calling script's name
#   die       message on stderr, exit 1

# shellcheck disable=SC2034  # used by the sourcing scripts
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_PGSW_NAME="$(basename "$0")"

log()  { printf '[%s] %s\n' "$_PGSW_NAME" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$_PGSW_NAME" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$_PGSW_NAME" "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the postgres OS user when we are root (PostgreSQL and
# PgBouncer refuse to run as root); run it directly otherwise.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# apt_install PKG... : install Debian packages non-interactively.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        sudo=(sudo)
    fi
    log "installing: $* (apt-get)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || return 1
}

# Newest /usr/lib/postgresql/<ver>/bin that has a server (or PG_BIN if set).
find_pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/pg_ctl" ] || die "PG_BIN=$PG_BIN has no pg_ctl"
        echo "$PG_BIN"; return 0
    fi
    local d best=""
    while IFS= read -r d; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && best="$d"
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    if [ -z "$best" ] && command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && best="$d"
    fi
    [ -n "$best" ] || return 1
    echo "$best"
}

# Make sure PostgreSQL server binaries exist (installing Debian's postgresql
# package if needed, without letting Debian create/start a cluster on 5432)
# and set PG_BIN.
ensure_pg_server() {
    if PG_BIN="$(find_pg_bin)"; then export PG_BIN; return 0; fi
    log "no PostgreSQL server binaries found; installing Debian's postgresql package"
    local sudo=()
    is_root || sudo=(sudo)
    # Keep Debian's postinst from creating (and starting) a 'main' cluster on 5432.
    "${sudo[@]}" mkdir -p /etc/postgresql-common
    if [ -f /etc/postgresql-common/createcluster.conf ] \
        && grep -Eq '^[[:space:]]*#?[[:space:]]*create_main_cluster' /etc/postgresql-common/createcluster.conf; then
        "${sudo[@]}" sed -i -E 's/^[[:space:]]*#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' \
            /etc/postgresql-common/createcluster.conf
    else
        echo 'create_main_cluster = false' | "${sudo[@]}" tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    apt_install postgresql postgresql-client
    PG_BIN="$(find_pg_bin)" || die "postgresql installed but no server binaries under /usr/lib/postgresql/*/bin"
    export PG_BIN
}

# Put ~/.cargo/bin on PATH if cargo is installed there but not on PATH.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1
}

cargo_missing_hint() {
    cat >&2 <<'EOF'
cargo (Rust toolchain) not found. Install it with rustup, then re-run:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    . "$HOME/.cargo/env"
(or see https://rustup.rs). This script cannot fetch it for you.
EOF
}

# Raise the soft open-files limit to the hard limit.
raise_nofile() {
    local hard
    hard="$(ulimit -Hn)"
    if [ "$hard" = unlimited ]; then
        hard="$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)"
    fi
    ulimit -n "$hard" 2>/dev/null || warn "could not raise open-files limit to $hard (now $(ulimit -n))"
}
