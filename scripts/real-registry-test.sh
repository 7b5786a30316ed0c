#!/usr/bin/env bash
# Runs tests/real_registry.rs against a real registry: Debian's docker-registry
# (Docker Distribution 2.8.2, which cannot delete by tag) with token auth whose
# realm is the gitlab-emulator binary's /jwt/auth.
#
#   scripts/real-registry-test.sh [CARGO_TEST_ARGS...] [-- TEST_BINARY_ARGS...]
#   scripts/real-registry-test.sh -- --ignored supply_chain   # only the signed and multi-arch ones
#
# Installs docker-registry if missing (apt), generates a signing key and its
# self-signed certificate (the registry's rootcertbundle), starts both servers on
# free loopback ports, runs the tests of tests/real_registry.rs (ignored unless
# asked for) with REAL_REGISTRY_* variables describing them, and stops both on exit.
# The undo test (`undo::`) runs last and alone: it stops the registry, runs
# its garbage collector and starts it again, through the hook this script
# writes (REAL_REGISTRY_COLLECT_GARBAGE).
#
# scripts/ledger-test.sh reuses it: with REAL_REGISTRY_NOTIFY_URL and
# REAL_REGISTRY_NOTIFY_TOKEN set, the registry sends its notifications there
# (docs/ledger.md); REAL_REGISTRY_TEST names the test target (default
# real_registry).
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf 'real-registry-test: %s\n' "$*" >&2; }
fail() {
    printf 'real-registry-test: FAIL: %s\n' "$*" >&2
    exit 1
}

command -v docker-registry >/dev/null || (apt-get update && apt-get install -y docker-registry)
for tool in docker-registry openssl python3 curl cargo; do
    command -v "$tool" >/dev/null || fail "$tool not found"
done

work=$(mktemp -d /tmp/real-registry-test.XXXXXX)
emulator_pid=""
registry_pid=""
cleanup() {
    local rc=$?
    set +e
    # The garbage collection hook restarts the registry: its pid is the file's.
    [ -s "$work/registry.pid" ] && registry_pid=$(cat "$work/registry.pid")
    for pid in "$registry_pid" "$emulator_pid"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    # A registry the hook started is not this shell's child: wait it out.
    for _ in $(seq 50); do
        [ -n "$registry_pid" ] && kill -0 "$registry_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$rc" != 0 ]; then
        for file in emulator.err registry.log; do
            [ -s "$work/$file" ] && { log "--- $file (last 30 lines)"; tail -n 30 "$work/$file" >&2; }
        done
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The token signer's key and the certificate the registry trusts it by.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=gitlab-issuer \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null ||
    fail "openssl could not make a key and certificate"

log "building the emulator"
cargo build --quiet -p gitlab-emulator
emulator_bin=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/gitlab-emulator
[ -x "$emulator_bin" ] || fail "no emulator binary at $emulator_bin"

registry_port=$(free_port)
registry_host=127.0.0.1:$registry_port

# The emulator serves REST and /jwt/auth only; --grant-push lets the tool move a
# tag onto a throw-away manifest, which Distribution 2.8 needs. With
# --upstream-registry its REST API is GitLab in front of this third-party
# registry: repositories it issued push tokens for, tags and tag details read
# from the registry, single-tag delete by GitLab's own dummy-manifest trick.
"$emulator_bin" --gitlab-addr 127.0.0.1:0 --upstream-registry "http://$registry_host" \
    --signing-key "$work/key.pem" --issuer gitlab-issuer --grant-push \
    >"$work/emulator.json" 2>"$work/emulator.err" &
emulator_pid=$!
for _ in $(seq 100); do
    [ -s "$work/emulator.json" ] && break
    kill -0 "$emulator_pid" 2>/dev/null || fail "the emulator exited: $(cat "$work/emulator.err")"
    sleep 0.1
done
[ -s "$work/emulator.json" ] || fail "the emulator did not start"
field() { python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$work/emulator.json" "$1"; }
gitlab_url=$(field gitlab_url)
job_token=$(field job_token)
project_path=$(field project_path)
project_id=$(field project_id)

mkdir -p "$work/data"
cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog: { disabled: true }
storage:
  filesystem: { rootdirectory: $work/data }
  delete: { enabled: true }
http:
  addr: $registry_host
auth:
  token:
    realm: $gitlab_url/jwt/auth
    service: container_registry
    issuer: gitlab-issuer
    rootcertbundle: $work/cert.pem
EOF
if [ -n "${REAL_REGISTRY_NOTIFY_URL:-}" ]; then
    # As docs/ledger.md tells a Distribution registry to notify the ledger.
    cat >>"$work/config.yml" <<EOF
notifications:
  endpoints:
    - name: ledger
      url: $REAL_REGISTRY_NOTIFY_URL
      headers:
        Authorization: [Bearer ${REAL_REGISTRY_NOTIFY_TOKEN:?with REAL_REGISTRY_NOTIFY_URL}]
      timeout: 2s
      threshold: 3
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
EOF
fi
# Started again by the garbage collection hook (below), hence functions.
start_registry() {
    docker-registry serve "$work/config.yml" </dev/null >>"$work/registry.log" 2>&1 &
    registry_pid=$!
    echo "$registry_pid" >"$work/registry.pid"
    local status=""
    for _ in $(seq 100); do
        status=$(curl -s -o /dev/null -w '%{http_code}' "http://$registry_host/v2/" || true)
        [ "$status" = 401 ] && return 0
        kill -0 "$registry_pid" 2>/dev/null || fail "docker-registry exited"
        sleep 0.1
    done
    fail "docker-registry does not answer on $registry_host (last status: ${status:-none})"
}
# Alive and not a zombie (the first registry is this shell's child, and the
# hook that stops it is not its parent: it stays a zombie until cleanup).
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}
stop_registry() {
    local pid
    pid=$(cat "$work/registry.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        running "$pid" || return 0
        sleep 0.1
    done
    fail "docker-registry (pid $pid) did not stop"
}
start_registry
curl -sf -o /dev/null -u "gitlab-ci-token:$job_token" \
    "$gitlab_url/jwt/auth?service=container_registry&scope=repository:$project_path:pull" ||
    fail "the emulator's /jwt/auth does not answer"
log "registry $registry_host ($(docker-registry --version 2>/dev/null | head -n 1)), token realm $gitlab_url/jwt/auth"

export REAL_REGISTRY_URL=http://$registry_host
export REAL_REGISTRY_HOST=$registry_host
export REAL_REGISTRY_GITLAB_URL=$gitlab_url
export REAL_REGISTRY_JOB_TOKEN=$job_token
export REAL_REGISTRY_PROJECT_PATH=$project_path
export REAL_REGISTRY_PROJECT_ID=$project_id

# The garbage collection hook the undo test calls (REAL_REGISTRY_COLLECT_GARBAGE
# [--delete-untagged]): as Distribution requires, the registry is stopped while
# its garbage collector runs, then started again on the same port and data.
{
    echo '#!/usr/bin/env bash'
    echo 'set -euo pipefail'
    declare -p work registry_host
    declare -f log fail running start_registry stop_registry
    cat <<'HOOK'
stop_registry
if ! docker-registry garbage-collect "$@" "$work/config.yml" >"$work/gc.log" 2>&1; then
    tail -n 20 "$work/gc.log" >&2
    start_registry
    fail "docker-registry garbage-collect $* failed"
fi
start_registry
grep 'manifest eligible for deletion' "$work/gc.log" >&2 || true
# What it removed, counted: the test asserts on it.
printf 'manifests deleted: %s\nblobs deleted: %s\n' \
    "$(grep -c 'manifest eligible for deletion' "$work/gc.log" || true)" \
    "$(grep -c 'blob eligible for deletion' "$work/gc.log" || true)"
HOOK
} >"$work/collect-garbage.sh"
chmod +x "$work/collect-garbage.sh"

cargo_args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    cargo_args+=("$1")
    shift
done
[ $# -gt 0 ] && shift
real_tests() {
    cargo test --test "${REAL_REGISTRY_TEST:-real_registry}" ${cargo_args[@]+"${cargo_args[@]}"} -- --nocapture "$@"
}
if [ $# -gt 0 ]; then
    # As asked. The undo test stops the registry to collect its garbage: run
    # it alone (`-- --ignored undo::`), not beside other tests.
    REAL_REGISTRY_COLLECT_GARBAGE=$work/collect-garbage.sh real_tests "$@"
else
    # The tests are #[ignore]d unless asked for, as here: every one side by
    # side but the undo test, which then runs alone (its garbage collection
    # stops the registry and sweeps every repository).
    real_tests --include-ignored --skip undo::
    log "the undo test, alone (it stops the registry to collect garbage)"
    REAL_REGISTRY_COLLECT_GARBAGE=$work/collect-garbage.sh real_tests --ignored undo::
fi
log "passed"
