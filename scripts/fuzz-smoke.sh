#!/usr/bin/env bash
# Short, bounded, coverage-guided fuzz run of every parser (cargo-fuzz /
# libFuzzer), seeded with the real evidence of testdata/vectors.
#
#   scripts/fuzz-smoke.sh                 # every target, 30 s each
#   FUZZ_SECONDS=3600 scripts/fuzz-smoke.sh dcap_quote   # a long run of one target
#
# cargo-fuzz needs a nightly toolchain (for -Zsanitizer=address); without
# one it runs on stable with RUSTC_BOOTSTRAP=1 and no sanitizer (`-s none`),
# which keeps the coverage instrumentation (plain -C llvm-args) and loses
# only ASan, which safe Rust does not need. A crash leaves its input in
# fuzz/artifacts/<target>/; replay it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a regression test. Exit status 1 if any target crashed.
set -uo pipefail
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECONDS:-30}
ALL="dcap_quote snp_report nitro_document tpm_evidence nvgpu_spdm azure_json endorsements http_attest"
TARGETS=${*:-$ALL}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked --version 0.13.2 || exit 2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    FUZZ=(cargo +nightly fuzz)
    SAN=()
    echo "toolchain: nightly (AddressSanitizer)"
else
    export RUSTC_BOOTSTRAP=1
    FUZZ=(cargo fuzz)
    SAN=(-s none)
    echo "toolchain: stable with RUSTC_BOOTSTRAP=1, no sanitizer"
fi

# Seed corpus from the real vectors (idempotent).
(cd fuzz && cargo run -q --bin seed-corpus corpus) || exit 2

failed=()
for t in $TARGETS; do
    echo "=== $t (${SECS}s)"
    log=$(mktemp)
    "${FUZZ[@]}" run "${SAN[@]}" -O "$t" -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|Done [0-9]+ runs|cov: [0-9]+ ft: [0-9]+ corp" "$log" | tail -4
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        echo "CRASH or error in $t (exit $rc):"
        grep -E "panicked|ERROR|SUMMARY|Test unit written|error" "$log" | head -20
    fi
    rm -f "$log"
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz-smoke: FAILED targets: ${failed[*]}"
    exit 1
fi
echo "fuzz-smoke: $(echo $TARGETS | wc -w) targets x ${SECS}s, no crash"
