#!/usr/bin/env bash
# Group cleanup benchmark: a group of projects and repositories on the emulator,
# cleaned by N shard processes side by side (`run --group --shard I/N`), their
# reports merged (`report merge`) and compared with a single-process dry run.
#
#   scripts/group-bench.sh --quick    # CI: 300 repositories × 50 tags, 4 shards (~20 s once built)
#   scripts/group-bench.sh            # 1,000 repositories × 1,000 tags (1M tags), 4 shards
#   scripts/group-bench.sh --repositories N --tags N --shards N --projects N --latency-ms N
#
# Prints wall time, requests per deleted tag (registry tokens and listings
# included) and the peak RSS of each shard. Fails only on what does not depend
# on the machine: a process failing, the merge refusing (a repository in two
# shards, a shard missing), the merged report differing from the single-process
# plan, a repository not handled, a tag left that the plan deletes. Timings are
# reported, never asserted. Take timings on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

repositories=1000 tags=1000 shards=4 projects=20 latency=5 concurrency=16
while [ $# -gt 0 ]; do
    case $1 in
    --quick) repositories=300 tags=50 projects=12 ;;
    --repositories) repositories=$2; shift ;;
    --tags) tags=$2; shift ;;
    --shards) shards=$2; shift ;;
    --projects) projects=$2; shift ;;
    --latency-ms) latency=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    *) echo "group-bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

log() { printf 'group-bench: %s\n' "$*" >&2; }
fail() {
    printf 'group-bench: FAIL: %s\n' "$*" >&2
    exit 1
}
if ! command -v /usr/bin/time >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq time >/dev/null
    else
        fail "/usr/bin/time is missing (Debian/Ubuntu: apt-get install time)"
    fi
fi

target="${CARGO_TARGET_DIR:-target}"
log "building registry-cleanup (release) and gitlab-emulator (bench-tools)"
cargo build --quiet --release --locked --bin registry-cleanup
cargo build --quiet --profile bench-tools --locked -p gitlab-emulator
bin=$root/$target/release/registry-cleanup

work=$(mktemp -d /tmp/group-bench.XXXXXX)
emulator_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The group: project group/p1 (the CI project) and group/p2…pP, the repositories
# spread over them, each with `latest`, five releases and builds (as in bench.sh:
# the newest 2% recent, the rest 60 days old or more).
log "generating $repositories repositories × $tags tags in $projects projects"
python3 - "$repositories" "$tags" "$projects" "$work/inventory.json" "$work/projects.txt" <<'EOF'
import datetime, json, sys
repositories, tags, projects, out, project_list = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
now = datetime.datetime.now(datetime.timezone.utc)
ts = lambda d: (now - d).strftime("%Y-%m-%dT%H:%M:%SZ")
counter = 0
def digest():
    global counter
    counter += 1
    return "sha256:%064x" % counter
with open(project_list, "w") as f:
    for p in range(2, projects + 1):
        f.write(f"{p}:group/p{p}\n")
with open(out, "w") as f:
    f.write('{"repositories":[')
    for r in range(repositories):
        project = r % projects + 1
        entries = [{"name": "latest", "digest": digest(), "created_at": ts(datetime.timedelta(hours=1))}]
        entries += [{"name": f"v1.0.{i}", "digest": digest(), "created_at": ts(datetime.timedelta(days=400 - i))} for i in range(5)]
        builds = max(tags - len(entries), 0)
        recent = builds // 50
        for i in range(builds):
            age = datetime.timedelta(minutes=i + 1) if i < recent else datetime.timedelta(days=60, minutes=i)
            entries.append({"name": f"build-{i:06d}", "digest": digest(), "created_at": ts(age)})
        f.write(("," if r else "") + json.dumps({"path": f"group/p{project}/r{r:05d}", "tags": entries}, separators=(",", ":")))
    f.write("]}")
EOF
cat >"$work/policy.yml" <<'EOF'
protect: ["v\\d+\\.\\d+\\.\\d+"]
rules:
  - name: old builds
    delete: "build-.*"
    keep_n: 10
    older_than: 30d
EOF

group_flags=()
while read -r project; do group_flags+=(--group-project "$project"); done <"$work/projects.txt"
# shellcheck source=scripts/emulator.sh
# shellcheck disable=SC1091 # sourced helper
. "$root/scripts/emulator.sh"
start_emulator "$root/$target/bench-tools/gitlab-emulator" "$work" --inventory "$work/inventory.json" \
    --project-path group/p1 --project-id 1 --latency-ms "$latency" "${group_flags[@]}"
env_vars=(
    CI_SERVER_URL="$gitlab_url" CI_API_V4_URL="$gitlab_url/api/v4"
    CI_PROJECT_ID=1 CI_PROJECT_PATH=group/p1
    CI_REGISTRY="$registry_host" CLEANUP_REGISTRY_URL="$registry_url"
    GITLAB_TOKEN="$access_token" CLEANUP_CONCURRENCY="$concurrency" CLEANUP_LOG=warn
)
summary() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/summary"))[sys.argv[2]])' "$gitlab_url" "$1"; }
tags_before=$(summary tags)

log "single process, dry run (the reference plan)"
/usr/bin/time -v -o "$work/time-single.txt" env -i "${env_vars[@]}" "$bin" run --dry-run --group group \
    --policy "$work/policy.yml" --report "$work/single.json" >"$work/single.out" 2>"$work/single.err" ||
    fail "the single-process dry run failed: $(tail -5 "$work/single.err")"
python3 -c 'import sys,urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/_emulator/reset-requests", method="POST"))' "$gitlab_url"

log "$shards shard processes side by side"
started=$(date +%s.%N)
pids=()
for index in $(seq "$shards"); do
    /usr/bin/time -v -o "$work/time-$index.txt" env -i "${env_vars[@]}" "$bin" run --group group \
        --shard "$index/$shards" --policy "$work/policy.yml" --report "$work/shard-$index.json" \
        >"$work/shard-$index.out" 2>"$work/shard-$index.err" &
    pids+=($!)
done
for index in $(seq "$shards"); do
    wait "${pids[$((index - 1))]}" || fail "shard $index/$shards failed: $(tail -5 "$work/shard-$index.err")"
done
wall=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
requests=$(summary requests)
jwt_auth=$(summary jwt_auth)
tags_after=$(summary tags)

shard_reports=()
for index in $(seq "$shards"); do shard_reports+=("$work/shard-$index.json"); done
"$bin" report merge "${shard_reports[@]}" --report "$work/merged.json" >"$work/merge.out" 2>"$work/merge.err" ||
    fail "report merge failed: $(cat "$work/merge.err")"

python3 - "$work" "$shards" "$repositories" "$wall" "$requests" "$jwt_auth" "$tags_before" "$tags_after" "$latency" "$concurrency" <<'EOF'
import json, re, sys
work, shards, repositories, wall, requests, jwt_auth, before, after, latency, concurrency = sys.argv[1:]
shards, repositories, requests, jwt_auth, before, after = map(int, (shards, repositories, requests, jwt_auth, before, after))
wall, latency, concurrency = float(wall), float(latency), int(concurrency)
load = lambda name: json.load(open(f"{work}/{name}"))
single, merged = load("single.json"), load("merged.json")
plan = lambda report: sorted((r["path"], d["tag"]) for r in report["repositories"] for d in r["deleted"])
problems = []
if plan(single) != plan(merged):
    problems.append("the merged shard reports do not delete what the single-process plan deletes")
paths = [r["path"] for r in merged["repositories"]]
if len(paths) != repositories or len(set(paths)) != repositories:
    problems.append(f"{len(set(paths))} repositories handled, {repositories} in the group")
deleted = merged["totals"]["deleted"]
if merged["totals"]["failed"] or before - after != deleted:
    problems.append(f"{before - after} tags gone, {deleted} reported deleted, {merged['totals']['failed']} failed")
def usage(name):
    text = open(f"{work}/{name}").read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return rss
rss = [usage(f"time-{i}.txt") for i in range(1, shards + 1)]
ideal = requests * latency / 1000 / concurrency / shards
print()
print("| repositories | tags | shards | deleted | requests | /jwt/auth | req/deleted | wall s | ideal s | peak RSS per shard MiB | single dry run RSS MiB |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
print(f"| {repositories} | {before} | {shards} | {deleted} | {requests} | {jwt_auth} | {requests / max(deleted, 1):.4f} | {wall:.2f} | {ideal:.2f} | {', '.join(f'{r:.1f}' for r in rss)} | {usage('time-single.txt'):.1f} |")
print()
print(f"ideal = requests × {latency:g} ms ÷ {concurrency} in flight ÷ {shards} shards; merged report equal to the single-process plan: {'yes' if plan(single) == plan(merged) else 'NO'}")
for problem in problems:
    print(f"group-bench: FAIL: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "OK"
