#!/usr/bin/env bash
# The pull ledger against real parts (docs/ledger.md):
#   1. PostgreSQL (Debian's, started here): the store's contract test, and
#      the benchmark smoke run when asked (--bench);
#   2. Docker Distribution 2.8 notifying the ledger (scripts/real-registry-test.sh
#      with a notification endpoint): pulls by tag and by digest, a multi-arch
#      index, the ledger restarted between two batches of pulls, then
#      inventory --ledger and plan keep exactly the pulled images — once with
#      SQLite, once with PostgreSQL.
#
#   scripts/ledger-test.sh [--bench]
#
# PostgreSQL refuses to run as root: as root the server runs as the postgres
# user (created by the package). Everything is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ledger-test: %s\n' "$*" >&2; }
fail() {
    printf 'ledger-test: FAIL: %s\n' "$*" >&2
    exit 1
}

bench=false
[ "${1:-}" = --bench ] && bench=true

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing postgresql"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
pgbin=$(dirname "$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")

work=$(mktemp -d /tmp/ledger-test.XXXXXX)
as_owner() { # runs a command as the owner of the database files
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}
cleanup() {
    local rc=$?
    set +e
    if [ -f "$work/data/postmaster.pid" ]; then
        as_owner "$pgbin/pg_ctl -D $work/data stop -m fast" >/dev/null 2>&1
    fi
    [ "$rc" != 0 ] && [ -s "$work/postgres.log" ] && { log "--- postgres.log (last 20 lines)"; tail -n 20 "$work/postgres.log" >&2; }
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

[ "$(id -u)" = 0 ] && chown postgres "$work"
pg_port=$(free_port)
as_owner "$pgbin/initdb -D $work/data -A trust -U postgres" >/dev/null || fail "initdb failed"
as_owner "$pgbin/pg_ctl -D $work/data -o '-k $work -p $pg_port -c listen_addresses=127.0.0.1 -c fsync=on' -l $work/postgres.log -w start" >/dev/null ||
    fail "PostgreSQL did not start"
export LEDGER_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
log "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"

log "the PostgreSQL store's contract"
cargo test --quiet --lib ledger::postgres -- --ignored

if $bench; then
    log "benchmark smoke run (SQLite and PostgreSQL)"
    bash scripts/ledger-bench.sh --quick
fi

ledger_port=$(free_port)
export REAL_REGISTRY_NOTIFY_URL="http://127.0.0.1:$ledger_port/events"
REAL_REGISTRY_NOTIFY_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
export REAL_REGISTRY_NOTIFY_TOKEN
log "Distribution 2.8 notifying a ledger on 127.0.0.1:$ledger_port"
REAL_REGISTRY_TEST=real_registry bash scripts/real-registry-test.sh -- --ignored ledger_
log "passed"
