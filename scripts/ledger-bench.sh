#!/usr/bin/env bash
# The pull ledger's ingest benchmark (bench/src/bin/ledger.rs): events per
# second committed over HTTP and the 50th/99th-percentile batch commit time,
# on SQLite and — with LEDGER_TEST_POSTGRES=postgres://… (scripts/ledger-test.sh
# sets it) — on PostgreSQL. Prints a Markdown table (BENCHMARKS.md).
#
#   scripts/ledger-bench.sh --quick   # smoke run: 2,000 events per case (CI)
#   scripts/ledger-bench.sh           # 20,000 events per case
#
# Numbers are reported, never asserted; take them on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
# The same packages as scripts/bench.sh builds, so that the two share one
# build (the same features for every dependency) and neither repeats it.
cargo build --quiet --profile bench-tools --locked -p gitlab-emulator -p registry-cleanup-bench
args=("$@")
if [ -n "${LEDGER_TEST_POSTGRES:-}" ]; then
    args+=(--postgres "$LEDGER_TEST_POSTGRES")
fi
exec "$target/bench-tools/ledger" ${args[@]+"${args[@]}"}
