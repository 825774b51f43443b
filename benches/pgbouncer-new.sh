#!/usr/bin/env bash
# Fetches a PgBouncer new enough for max_prepared_statements (>= 1.21) from
# Debian trixie, with the libraries it needs, into DIR, and writes
# DIR/pgbouncer: a wrapper that runs it with trixie's own loader. Debian
# bookworm only ships 1.18. Nothing is installed system-wide: apt's lists
# and downloads stay under DIR. Used by benches/compare.sh; NOT a test.
#
#   benches/pgbouncer-new.sh DIR      prints DIR/pgbouncer on success
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

DIR="${1:?usage: benches/pgbouncer-new.sh DIR}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ -x "$DIR/pgbouncer" ] && "$DIR/pgbouncer" --version >/dev/null 2>&1; then
    echo "$DIR/pgbouncer"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || die "apt-get is needed to fetch PgBouncer from Debian"

APT="$DIR/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$DIR/debs" "$DIR/root"
echo "deb http://deb.debian.org/debian trixie main" >"$APT/sources.list"
opts=(-q -o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives"
      -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
log "fetching Debian trixie's package lists (into $APT)"
apt-get "${opts[@]}" update >"$DIR/apt.log" 2>&1 || die "apt-get update failed; see $DIR/apt.log"
# PgBouncer and every library it loads, down to trixie's libc.
pkgs=(pgbouncer libc6 libc-ares2 libevent-2.1-7t64 libssl3t64 libsystemd0 libpam0g
      libcap2 libgcrypt20 liblz4-1 liblzma5 libzstd1 libgpg-error0 libaudit1 libcap-ng0)
(cd "$DIR/debs" && apt-get "${opts[@]}" download "${pkgs[@]}" >>"$DIR/apt.log" 2>&1) \
    || die "apt-get download failed; see $DIR/apt.log"
for deb in "$DIR"/debs/*.deb; do
    dpkg-deb -x "$deb" "$DIR/root"
done
LIB="$DIR/root/usr/lib/x86_64-linux-gnu"
cat >"$DIR/pgbouncer" <<WRAP
#!/bin/sh
# PgBouncer from Debian trixie, run with trixie's loader and libraries.
exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$DIR/root/usr/sbin/pgbouncer" "\$@"
WRAP
chmod 0755 "$DIR/pgbouncer"
chmod -R a+rX "$DIR"
"$DIR/pgbouncer" --version >/dev/null || die "the fetched PgBouncer does not run"
log "$("$DIR/pgbouncer" --version | head -n 1) ready at $DIR/pgbouncer"
echo "$DIR/pgbouncer"
