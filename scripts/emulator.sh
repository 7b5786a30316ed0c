# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the sourcing script
# Sourced by the test scripts: starts the test emulator binary on free loopback ports.
#
#   start_emulator EMULATOR_BIN WORKDIR [EMULATOR_FLAGS...]
#
# Runs it in the background, waits for its one JSON line of addresses and sets
# emulator_pid, gitlab_url, registry_url, registry_host, job_token and access_token. The caller
# defines fail() and stops emulator_pid in its exit trap.

start_emulator() {
    local bin=$1 work=$2 addrs
    shift 2
    "$bin" --gitlab-addr 127.0.0.1:0 --registry-addr 127.0.0.1:0 "$@" \
        >"$work/emulator.out" 2>"$work/emulator.err" &
    emulator_pid=$!
    # Up to 2 minutes: loading a million-tag inventory takes a while; the
    # loop ends as soon as the addresses are printed.
    for _ in $(seq 1200); do
        [ -s "$work/emulator.out" ] && break
        kill -0 "$emulator_pid" 2>/dev/null || fail "emulator exited: $(cat "$work/emulator.err")"
        sleep 0.1
    done
    read -r addrs <"$work/emulator.out" || fail "emulator printed no addresses"
    emulator_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$addrs" "$1"; }
    gitlab_url=$(emulator_field gitlab_url)
    registry_url=$(emulator_field registry_url)
    registry_host=$(emulator_field registry_host)
    job_token=$(emulator_field job_token)
    access_token=$(emulator_field access_token)
}
