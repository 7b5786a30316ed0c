#!/usr/bin/env bash
# One-command benchmark of registry-cleanup against the GitLab emulator.
#
#   scripts/bench.sh --quick   # CI smoke test: 1,000 tags (~25 s after the build)
#   scripts/bench.sh           # 1,000 and 10,000 tags (~4 min)
#   scripts/bench.sh --full    # also 100,000 tags (the tool only)
#
# Builds registry-cleanup as released (target/release) and the helpers
# (gitlab-emulator, bench, bench-serial) with the bench-tools profile, then
# runs the scenarios: each against a fresh emulator on loopback at 5 ms a
# request, registry-cleanup under /usr/bin/time -v and, side by side, a serial
# client doing the same cleanup one request at a time. Prints a Markdown
# table (wall time, requests per deleted tag, 429s, peak RSS, speed-up), the
# offline planner on 100,000 tags and the binary size.
#
# Fails only on what does not depend on the machine: the tool failing, a
# deletion missing, more than 1.05 requests per deleted tag with /gitlab/v1
# or 2.1 through REST, a 429 within the announced budget, the planner above
# 150 MiB. Timings are reported, never asserted. Other flags go to the runner
# (target/bench-tools/bench --help): --latency-ms, --concurrency, --sweep,
# --serial-max, --json FILE. Take timings on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v /usr/bin/time >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq time >/dev/null
    else
        echo "bench.sh: /usr/bin/time is missing (Debian/Ubuntu: apt-get install time)" >&2
        exit 2
    fi
fi

target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release --locked --bin registry-cleanup
cargo build --quiet --profile bench-tools --locked -p gitlab-emulator -p registry-cleanup-bench
exec "$target/bench-tools/bench" --bin "$target/release" --tools "$target/bench-tools" --max-rss-mib 150 "$@"
