#!/usr/bin/env bash
# Try registry-cleanup live, with nothing to set up: the test GitLab emulator
# (tests/emulator, binary gitlab-emulator) stands in for GitLab and its registry,
# loaded with the examples (examples/inventory.json: project acme/shop; and the
# other projects of the group acme that README.md and docs/policy.md try their
# examples on: examples/signed-inventory.json, examples/playground.json). Their
# dates are served as of 2026-11-01 (the examples' `--now`), whenever asked, so a
# live run plans exactly what `plan --now 2026-11-01T00:00:00Z` plans offline.
#
#   scripts/try-live.sh [REGISTRY_CLEANUP_ARGS...]   # one command against a fresh emulator
#   scripts/try-live.sh --serve                      # a playground that stays up
#   scripts/try-live.sh --stop                       # stop it
#
# Without arguments it runs `registry-cleanup run --dry-run --policy
# examples/policy.yml`; with arguments `registry-cleanup ARGS...` instead (e.g.
# `inventory`), then stops the emulator. With --serve the emulator keeps running
# in the background: the script prints the variables to export (also written to
# $PLAYGROUND/env, to `source`) and how to stop it. Nothing outside the emulator is
# touched, and the emulator keeps nothing: it lives in memory.
#
# registry-cleanup is the release build (`cargo build --release`, the README's
# first command: nothing is rebuilt when it is up to date); the emulator a debug
# build. PLAYGROUND (default ${TMPDIR:-/tmp}/registry-cleanup-playground) is where
# --serve keeps its process id, addresses and logs.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

log() { printf 'try-live: %s\n' "$*" >&2; }
fail() {
    printf 'try-live: FAIL: %s\n' "$*" >&2
    exit 1
}

playground=${PLAYGROUND:-${TMPDIR:-/tmp}/registry-cleanup-playground}
# The examples' clock: every example of the docs is planned at this instant.
examples_now=2026-11-01T00:00:00Z
inventories=(examples/inventory.json examples/signed-inventory.json examples/playground.json)
# A token that is nobody's secret: the emulator accepts whatever it is told to.
token="try-live-token-not-a-secret"

running_pid() { # the playground's emulator, if it still runs
    local pid
    pid=$(cat "$playground/emulator.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && [ -n "$pid" ] && printf '%s\n' "$pid"
}

mode=once
case ${1:-} in
--serve) mode=serve ;;
--stop)
    if pid=$(running_pid); then
        kill "$pid"
        log "stopped the playground (emulator pid $pid)"
    else
        log "no playground runs (nothing in $playground)"
    fi
    rm -f "$playground/emulator.pid"
    exit 0
    ;;
esac

if [ "$mode" = serve ] && pid=$(running_pid); then
    log "the playground already runs (emulator pid $pid); its environment:"
    cat "$playground/env"
    exit 0
fi

for tool in cargo python3; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done
log "building registry-cleanup (release, as the README builds it) and gitlab-emulator (debug)"
cargo build --quiet --release --locked --bin registry-cleanup
cargo build --quiet --locked -p gitlab-emulator
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
tool_dir="$target_dir/release"
emulator_bin="$target_dir/debug/gitlab-emulator"

emulator_args=(--access-token "$token" --inventory-now "$examples_now")
for inventory in "${inventories[@]}"; do
    emulator_args+=(--inventory "$root/$inventory")
done

if [ "$mode" = serve ]; then
    mkdir -p "$playground"
    rm -f "$playground/emulator.out"
    # Its own session: it outlives this script and the terminal's Ctrl-C.
    setsid "$emulator_bin" --gitlab-addr 127.0.0.1:0 --registry-addr 127.0.0.1:0 "${emulator_args[@]}" \
        >"$playground/emulator.out" 2>"$playground/emulator.err" </dev/null &
    pid=$!
    for _ in $(seq 300); do
        [ -s "$playground/emulator.out" ] && break
        kill -0 "$pid" 2>/dev/null || fail "the emulator stopped: $(cat "$playground/emulator.err")"
        sleep 0.1
    done
    [ -s "$playground/emulator.out" ] || fail "the emulator printed no addresses"
    echo "$pid" >"$playground/emulator.pid"
    out="$playground/emulator.out"
else
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
    start_emulator "$emulator_bin" "$work" "${emulator_args[@]}"
    out="$work/emulator.out"
fi

field() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$out" "$1"; }
project_path=$(field project_path)
# The project by path only, so that `CI_PROJECT_PATH=acme/nightlies registry-cleanup …`
# reaches another project of the group.
env_lines=(
    "CI_SERVER_URL=$(field gitlab_url)"
    "CI_PROJECT_PATH=$project_path"
    "CI_REGISTRY=$(field registry_host)"
    "CLEANUP_REGISTRY_URL=$(field registry_url)"
    "GITLAB_TOKEN=$token"
)

if [ "$mode" = serve ]; then
    {
        printf '# The registry-cleanup playground: gitlab-emulator pid %s, serving the group acme\n' "$pid"
        printf '# (projects %s and the examples of docs/policy.md), dated as of %s.\n' "$project_path" "$examples_now"
        printf 'export %s\n' "${env_lines[@]}"
        # shellcheck disable=SC2016 # $PATH is for the shell that reads the line
        printf 'export PATH="%s:$PATH"\n' "$tool_dir"
    } >"$playground/env"
    cat "$playground/env"
    cat <<EOF

# Paste the lines above into your shell (or: source $playground/env), then e.g.
#   registry-cleanup run --dry-run --policy examples/policy.yml --html /tmp/plan.html
#   CI_PROJECT_PATH=acme/nightlies registry-cleanup run --dry-run --policy examples/policies/nightlies.yml
# It runs until you stop it: scripts/try-live.sh --stop   (or: kill $pid)
EOF
    exit 0
fi

printf '# The emulator (a stand-in for GitLab and its registry) serves %s until this script ends.\n' "$project_path"
printf '# To talk to such an emulator from your shell, export (or keep one up: scripts/try-live.sh --serve):\n'
printf 'export %s\n' "${env_lines[@]}"
if [ "$#" -eq 0 ]; then
    set -- run --dry-run --policy examples/policy.yml
fi
printf '\n$ registry-cleanup %s\n' "$*"
env "${env_lines[@]}" "$tool_dir/registry-cleanup" "$@"
