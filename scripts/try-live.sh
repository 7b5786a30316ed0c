#!/usr/bin/env bash
# Try registry-cleanup live, in one command, with nothing to set up: starts the
# test GitLab emulator (tests/emulator, binary gitlab-emulator) loaded with
# examples/inventory.json, prints the environment a shell would export to talk
# to it, runs `registry-cleanup run --dry-run --policy examples/policy.yml`
# against it, and stops the emulator.
#
#   scripts/try-live.sh [REGISTRY_CLEANUP_ARGS...]
#
# Without arguments it runs the dry run above; with arguments it runs
# `registry-cleanup ARGS...` instead (e.g. `inventory`, or `run --policy FILE
# --dry-run`). Nothing outside the emulator is touched, and the emulator keeps
# nothing: it lives in memory for the length of the script.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf 'try-live: %s\n' "$*" >&2; }
fail() {
    printf 'try-live: FAIL: %s\n' "$*" >&2
    exit 1
}

for tool in cargo python3; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

log "building registry-cleanup and gitlab-emulator (debug)"
# Built one package at a time, as the tests build them, so nothing is rebuilt.
cargo build --quiet --locked --bin registry-cleanup
cargo build --quiet --locked -p gitlab-emulator
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/debug"

work=$(mktemp -d /tmp/try-live.XXXXXX)
emulator_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    [ "$rc" != 0 ] && [ -s "$work/emulator.err" ] && { log "--- emulator.err"; cat "$work/emulator.err" >&2; }
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/emulator.sh
. scripts/emulator.sh
# A token that is nobody's secret: the emulator accepts whatever it is told to.
token="try-live-token-not-a-secret"
# The project path (acme/shop) comes from the inventory's repository paths.
start_emulator "$bin/gitlab-emulator" "$work" --inventory examples/inventory.json --access-token "$token"
field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$work/emulator.out" "$1"; }
project_path=$(field project_path)
project_id=$(field project_id)

env_lines=(
    "CI_SERVER_URL=$gitlab_url"
    "CI_PROJECT_ID=$project_id"
    "CI_PROJECT_PATH=$project_path"
    "CI_REGISTRY=$registry_host"
    "CLEANUP_REGISTRY_URL=$registry_url"
    "GITLAB_TOKEN=$token"
)
printf '# The emulator (a stand-in for GitLab and its registry) serves %s until this script ends.\n' "$project_path"
printf '# To talk to such an emulator from your shell, export:\n'
printf 'export %s\n' "${env_lines[@]}"
if [ "$#" -eq 0 ]; then
    set -- run --dry-run --policy examples/policy.yml
fi
printf '\n$ registry-cleanup %s\n' "$*"
env "${env_lines[@]}" "$bin/registry-cleanup" "$@"
