#!/usr/bin/env bash
# Build and run every fuzz target in fuzz/ for a short, fixed time each.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 20)
#
# Installs cargo-fuzz from crates.io if it is missing. cargo-fuzz needs
# nightly-only flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Each target starts from its committed seeds
# (fuzz/seeds/<target>/) plus whatever earlier runs left in
# fuzz/corpus/<target>/ (git-ignored). Any crash, panic, leak or timeout
# fails the script; libFuzzer writes the reproducer to
# fuzz/artifacts/<target>/ and the script prints its hex.
#
# Environment: FUZZ_TARGETS="a b" limits the run to some targets (e.g.
# FUZZ_TARGETS=handshake_h2 for the HTTP/2 extended CONNECT alone).
set -euo pipefail

seconds="${1:-20}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

echo "fuzz-smoke: building $(echo $targets | wc -w) targets" >&2
cargo fuzz build

summary=()
status=0
for target in $targets; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
    extra=()
    case "$target" in
        connection_*) max_len=16384 ;;
        handshake_*) max_len=4096; extra=(-dict=fuzz/handshake.dict) ;;
        *) max_len=4096 ;;
    esac
    log="$(mktemp)"
    echo "fuzz-smoke: $target for ${seconds}s" >&2
    if cargo fuzz run "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
        >"$log" 2>&1; then
        runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" \
            | grep -Eo '[0-9]+$' | awk '{s+=$1} END {print s+0}')"
        summary+=("ok    $target: $runs runs in ${seconds}s")
    else
        status=1
        tail -n 40 "$log" >&2
        for artifact in $(grep -Eo 'fuzz/artifacts/[^ ]+' "$log" | sort -u); do
            [ -f "$artifact" ] || continue
            echo "fuzz-smoke: reproducer $artifact (hex):" >&2
            od -An -tx1 -v "$artifact" | tr -d ' \n' >&2
            echo >&2
        done
        summary+=("CRASH $target (log above)")
    fi
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
exit "$status"
