#!/usr/bin/env bash
# The HTML report in a real browser: makes the pages of known reports and
# opens each in headless Chromium (Debian's, driven by playwright-core; both
# installed by scripts/ci-tools.sh), which checks from the DOM that the totals,
# the per-rule and per-reason counts and the tag rows equal the JSON report's
# and that the page made no request (tests/browser/check-page.cjs).
#
#   scripts/browser-test.sh                       # what .ci/run runs
#   scripts/browser-test.sh --update-screenshot   # also refresh docs/images/html-report.png
#
# The reports: a project's dry run and its live run against the emulator
# (examples/inventory.json), a group dry run in 3 shards (streamed, each with
# its page) merged by `report merge --html`, the README's plan of the examples
# (whose page is the screenshot in the README) and the offline plan of 100,000
# tags (tests/browser/big-inventory.py). `report html` must turn each report
# into the very page the run wrote beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

update_screenshot=false
for arg in "$@"; do
    case $arg in
    --update-screenshot) update_screenshot=true ;;
    *) echo "browser-test.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

log() { printf 'browser-test: %s\n' "$*" >&2; }
fail() {
    printf 'browser-test: FAIL: %s\n' "$*" >&2
    exit 1
}

command -v chromium >/dev/null || fail "chromium not found: run scripts/ci-tools.sh browser"
NODE_PATH=$(npm root -g)
export NODE_PATH
node -e 'require("playwright-core")' 2>/dev/null || fail "playwright-core not found in $NODE_PATH: run scripts/ci-tools.sh browser"

log "building registry-cleanup and gitlab-emulator (debug, as the tests build them)"
cargo build --quiet --locked --bin registry-cleanup
cargo build --quiet --locked -p gitlab-emulator
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug"
tool="$bin/registry-cleanup"

work=$(mktemp -d /tmp/browser-test.XXXXXX)
emulator_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    [ "$rc" != 0 ] && [ -s "$work/emulator.err" ] && { log "--- emulator.err"; tail -20 "$work/emulator.err" >&2; }
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/emulator.sh
. scripts/emulator.sh
token="browser-test-token-not-a-secret"
start_emulator "$bin/gitlab-emulator" "$work" --inventory examples/inventory.json --access-token "$token"
project_id=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["project_id"])' "$work/emulator.out")
env_lines=(
    "CI_SERVER_URL=$gitlab_url"
    "CI_PROJECT_ID=$project_id"
    "CI_PROJECT_PATH=acme/shop"
    "CI_REGISTRY=$registry_host"
    "CLEANUP_REGISTRY_URL=$registry_url"
    "GITLAB_TOKEN=$token"
)
cli() { env "${env_lines[@]}" "$tool" "$@" >>"$work/runs.log" 2>&1 || fail "registry-cleanup $* failed: $(tail -5 "$work/runs.log")"; }

log "a project's dry run, then the group's in 3 shards, merged"
cli run --dry-run --policy examples/policy.yml --report "$work/dry.json" --html "$work/dry.html"
for shard in 1 2 3; do
    cli run --dry-run --policy examples/policy.yml --group acme --shard "$shard/3" \
        --report "$work/shard-$shard.json" --html "$work/shard-$shard.html"
done
cli report merge "$work"/shard-{1,2,3}.json --report "$work/merged.json" --html "$work/merged.html"
log "the project's live run (deletes on the emulator)"
cli run --policy examples/policy.yml --report "$work/run.json" --html "$work/run.html"

log "the README's plan of the examples, and the offline plan of 100,000 tags"
cli plan --inventory examples/inventory.json --policy examples/policy.yml \
    --now 2026-11-01T00:00:00Z --report "$work/examples.json" --html "$work/examples.html"
python3 tests/browser/big-inventory.py 100000 >"$work/big-inventory.json"
cli plan --inventory "$work/big-inventory.json" --policy tests/browser/big-policy.yml \
    --now 2026-11-01T00:00:00Z --report "$work/big.json" --html "$work/big.html"

# Each page is the page of its JSON report, however it was written (whole,
# streamed or merged): `report html` makes it again from the JSON.
for name in dry shard-1 shard-2 shard-3 merged run examples big; do
    "$tool" report html "$work/$name.json" --output "$work/$name.again.html" >/dev/null 2>&1 ||
        fail "report html $name.json failed"
    cmp -s "$work/$name.html" "$work/$name.again.html" ||
        fail "$name.html differs from the page report html makes of $name.json"
done

for name in dry run merged shard-1 examples big; do
    timeout 300 node tests/browser/check-page.cjs "$work/$name.json" "$work/$name.html" \
        --screenshot "$work/$name.png" || fail "$name.html"
done
python3 - "$work" <<'EOF' || fail "the merged report does not hold every repository of the group once"
import json, sys
work = sys.argv[1]
merged = json.load(open(f"{work}/merged.json"))
shards = [json.load(open(f"{work}/shard-{i}.json")) for i in (1, 2, 3)]
paths = sorted(r["path"] for s in shards for r in s["repositories"])
assert paths == sorted(r["path"] for r in merged["repositories"]) and len(paths) == len(set(paths)), paths
assert merged["totals"]["tags"] == sum(s["totals"]["tags"] for s in shards)
EOF

if $update_screenshot; then
    mkdir -p docs/images
    cp "$work/examples.png" docs/images/html-report.png
    log "updated docs/images/html-report.png"
fi
log "ok: $(du -h "$work/big.html" | cut -f1) page for 100,000 tags; every page loaded nothing"
