#!/usr/bin/env bash
# Short fuzzing run of every cargo-fuzz target in fuzz/ (see fuzz/Cargo.toml).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      default 20
# Needs a nightly toolchain (libFuzzer's instrumentation); without one it says
# the fuzz step is skipped and exits 0. Installs cargo-fuzz when missing.
# Builds all targets once, then runs each for SECONDS_PER_TARGET, one target
# per CPU at a time, on a copy of its seed corpus in a temporary directory
# (fuzz/corpus/ stays as committed). Prints each target's executions; exits 1
# if any target crashed, with the panic and the input that caused it (kept in
# fuzz/artifacts/<target>/; replay it with the command printed).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

secs="${1:-20}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]"

if ! ensure_cargo_on_path; then
    cargo_missing_hint
    exit 1
fi
if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q nightly; then
    log "no nightly toolchain (rustup toolchain list): the fuzz step is skipped"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$SECONDS
# -s none: pgswitch's code on these paths is safe Rust, so a bug shows as a
# panic without AddressSanitizer, and the build is much faster without it.
# More codegen units and the per-package opt-levels in fuzz/Cargo.toml keep
# the build to about 90 s on 2 cores.
# Its own target directory, whatever CARGO_TARGET_DIR says: the binaries
# are run from there below.
build=(-s none --codegen-units 16 --target-dir "$REPO/fuzz/target")
cargo +nightly fuzz build "${build[@]}"
log "fuzz targets built in $((SECONDS - started))s"

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin="$REPO/fuzz/target/$triple/release"
mapfile -t targets < <(cargo +nightly fuzz list)
[ "${#targets[@]}" -gt 0 ] || die "no fuzz targets found"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

run_target() {
    local t="$1" corpus="$tmp/corpus-$t" artifacts="$REPO/fuzz/artifacts/$t/"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "fuzz/corpus/$t" ]; then
        cp -R "fuzz/corpus/$t/." "$corpus/"
    fi
    # -timeout: an input that runs this long counts as a crash (a hang).
    local rc=0
    "$bin/$t" "$corpus" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" >"$tmp/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$tmp/$t.rc"
}

jobs="$(nproc 2>/dev/null || echo 1)"
log "running ${#targets[@]} targets for ${secs}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait || true

crashed=0
printf '\n%-12s %14s  %s\n' target executions result
for t in "${targets[@]}"; do
    log_file="$tmp/$t.log"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log_file" | tail -n 1)"
    [ -n "$execs" ] || execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log_file" | tail -n 1)"
    rc="$(cat "$tmp/$t.rc" 2>/dev/null || echo 1)"
    if [ "$rc" = 0 ]; then
        printf '%-12s %14s  %s\n' "$t" "${execs:-?}" ok
        continue
    fi
    crashed=$((crashed + 1))
    input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log_file" | tail -n 1)"
    printf '%-12s %14s  %s\n' "$t" "${execs:-?}" "CRASH (exit $rc)"
    {
        echo "---- $t: crash input: ${input:-not written (see the log below)}"
        grep -A 3 -m 1 'panicked at' "$log_file" || tail -n 30 "$log_file"
        if [ -n "$input" ]; then
            echo "---- replay: cargo +nightly fuzz run ${build[*]} $t $input"
        fi
    } >&2
done
log "fuzz step took $((SECONDS - started))s"
if [ "$crashed" -gt 0 ]; then
    die "$crashed fuzz target(s) crashed"
fi
