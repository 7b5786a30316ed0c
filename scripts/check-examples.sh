#!/usr/bin/env bash
# Every example of README.md and docs/policy.md, run as written against the
# playground (scripts/try-live.sh --serve), in a scratch copy of a checkout:
# each command must succeed and print what the docs show, each policy must pass
# `check`, and each worked example of docs/policy.md must plan what its table
# says (scripts/doc-examples.py). What cannot run here is marked in the docs
# `<!-- not live: REASON -->` and listed at the end.
#
#   scripts/check-examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf 'check-examples: %s\n' "$*" >&2; }
work=$(mktemp -d /tmp/check-examples.XXXXXX)
export PLAYGROUND="$work/playground"
cleanup() {
    local rc=$?
    set +e
    bash scripts/try-live.sh --stop >/dev/null 2>&1
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/try-live.sh --serve >"$work/serve.log"
# shellcheck source=/dev/null # written by try-live.sh --serve
. "$PLAYGROUND/env"

# A checkout as a reader has one, with nothing left behind in this one.
checkout="$work/checkout"
mkdir -p "$checkout/.gitlab"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
for entry in examples scripts tests docs Cargo.toml Cargo.lock; do
    ln -s "$root/$entry" "$checkout/$entry"
done
ln -s "$target_dir" "$checkout/target"

log "running the examples of README.md and docs/policy.md"
python3 scripts/doc-examples.py --checkout "$checkout" README.md docs/policy.md
