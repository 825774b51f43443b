#!/usr/bin/env bash
# Fetches a PgBouncer new enough for max_prepared_statements (>= 1.21) from
# Debian trixie, with the libraries it needs, into DIR, and writes
# DIR/pgbouncer: a wrapper that runs it with trixie's own loader. Debian
# bookworm only ships 1.18. Nothing is installed system-wide: apt's lists
# and downloads stay under DIR. Used by benches/compare.sh; NOT a test.
#
# The packages come from the machine's own Debian archive: the first enabled
# "deb" source in /etc/apt/sources.list or /etc/apt/sources.list.d/ (one-line
# .list or deb822 .sources) whose suite is this release's codename and whose
# components include main. Its URI (and its signed-by keyring, if it names a
# file) is reused with the suite changed to trixie. Debian machines only.
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

# archive_source CODENAME: "URI<TAB>KEYRING" of the machine's Debian archive
# for CODENAME (KEYRING empty when the entry names none, or not as a file).
archive_source() {
    local f found
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [opt=value ...] URI SUITE COMPONENT...
        found="$(awk -v want="$1" '
            { sub(/#.*/, "") }
            $1 != "deb" { next }
            {
                i = 2; key = ""
                if ($i ~ /^\[/) {
                    for (; i <= NF; i++) {
                        o = $i; gsub(/[][]/, "", o)
                        if (o ~ /^signed-by=\//) key = substr(o, 11)
                        if ($i ~ /\]$/) break
                    }
                    i++
                }
                if ($(i + 1) != want) next
                for (j = i + 2; j <= NF; j++) {
                    if ($j == "main") { print $i "\t" key; exit }
                }
            }' "$f")"
        if [ -n "$found" ]; then printf '%s\n' "$found"; return 0; fi
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 paragraphs: Types, URIs, Suites, Components, Enabled, Signed-By.
        found="$(awk -v want="$1" '
            function has(list, word) { return (" " list " ") ~ (" " word " ") }
            function flush() {
                if (!done && has(types, "deb") && has(suites, want) && has(comps, "main") \
                    && tolower(enabled) != "no" && uris != "") {
                    split(uris, u, " "); print u[1] "\t" (key ~ /^\// ? key : ""); done = 1
                }
                types = uris = suites = comps = key = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }
            {
                field = tolower($0); sub(/:.*/, "", field)
                value = $0; sub(/^[^:]*:[ \t]*/, "", value); gsub(/[ \t]+/, " ", value)
                if (field == "types") types = value
                else if (field == "uris") uris = value
                else if (field == "suites") suites = value
                else if (field == "components") comps = value
                else if (field == "enabled") enabled = value
                else if (field == "signed-by") key = value
            }
            END { flush() }' "$f")"
        if [ -n "$found" ]; then printf '%s\n' "$found"; return 0; fi
    done
    return 1
}

os_id="$(. /etc/os-release 2>/dev/null && echo "${ID:-}")"
codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
[ "$os_id" = debian ] && [ -n "$codename" ] \
    || die "needs a Debian release with its own apt sources (this is '${os_id:-unknown}'); set PGBOUNCER_BIN instead"
IFS=$'\t' read -r uri keyring < <(archive_source "$codename" || true) || true
[ -n "${uri:-}" ] \
    || die "no enabled 'deb' source for suite $codename with component main in /etc/apt/sources.list or /etc/apt/sources.list.d/; set PGBOUNCER_BIN instead"

APT="$DIR/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$DIR/debs" "$DIR/root"
if [ -n "${keyring:-}" ]; then
    echo "deb [signed-by=$keyring] $uri trixie main" >"$APT/sources.list"
else
    echo "deb $uri trixie main" >"$APT/sources.list"
fi
opts=(-q -o "Dir::Etc::sourcelist=$APT/sources.list" -o "Dir::Etc::sourceparts=-"
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives"
      -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
log "fetching Debian trixie's package lists from $uri (into $APT)"
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
