#!/usr/bin/env bash
# Tests the CI/CD components (templates/*.yml) and .gitlab-ci.yml:
#
#   scripts/ci-tools.sh components && scripts/component-test.sh
#
# 1. Static: each template's job document, interpolated with its defaults, and
#    .gitlab-ci.yml against GitLab's CI schema (check-jsonschema); the job scripts
#    through shellcheck (POSIX sh: the image has busybox); the inputs of every
#    include of the components (.gitlab-ci.yml, docs, fixtures) against their specs;
#    the generated inputs tables are up to date.
# 2. Live: a throw-away git repository includes the templates with `include: local:`
#    and inputs (tests/components/pipeline.yml); gitlab-ci-local runs the jobs in
#    shell mode with the freshly built binary and the image's busybox tools on PATH,
#    against the test emulator (tests/emulator) loaded with tests/components/inventory.json.
#    Asserted on the emulator: dry runs send no DELETE and change nothing; the cleanup
#    deletes exactly the expected plan (also cross-checked with `registry-cleanup plan`);
#    the dotenv counts reach a later job; the delete job removes the branch's tag in the
#    chosen repositories and nothing else; a delete job whose rules lack `when: manual`
#    refuses to delete (unless `allow_automatic: true`); the group component's shard jobs
#    (`parallel:`, each its CI_NODE_INDEX) and merge job plan what the cleanup plans.
# 3. This project's .gitlab-ci.yml, its component includes turned into local ones:
#    the jobs of branch, release-tag and other tag pipelines, and their needs.
# 4. Misspelt inputs are rejected.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
fixtures=$root/tests/components

# shellcheck source=scripts/emulator.sh
. "$root/scripts/emulator.sh"
log() { printf 'component-test: %s\n' "$*" >&2; }
fail() {
    printf 'component-test: FAIL: %s\n' "$*" >&2
    exit 1
}

for tool in gitlab-ci-local check-jsonschema shellcheck python3 git cargo rsync; do
    command -v "$tool" >/dev/null || fail "$tool not found; run scripts/ci-tools.sh components"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 has no yaml module; run scripts/ci-tools.sh components"
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || fail "no static /bin/busybox; run scripts/ci-tools.sh components"

work=$(mktemp -d /tmp/component-test.XXXXXX)
emulator_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    if [ -n "${KEEP_WORK:-}" ]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. static checks -------------------------------------------------------------
log "validating templates and .gitlab-ci.yml against GitLab's CI schema"
for template in templates/*.yml; do
    name=$(basename "$template" .yml)
    python3 tests/components/ci_inputs.py render "$template" >"$work/$name.json"
    check-jsonschema --builtin-schema vendor.gitlab-ci "$work/$name.json" >/dev/null ||
        check-jsonschema --builtin-schema vendor.gitlab-ci "$work/$name.json" ||
        fail "$template (job document with default inputs) does not match GitLab's schema"
done
for template in templates/*.yml; do
    # The job scripts as the runner gets them (default inputs), for the image's sh.
    # Each job in a subshell of its own: one job's `exit` leaves the next reachable,
    # and the jobs' environments are separate (SC2030/SC2031 are about that).
    python3 -c 'import json, sys
print("#!/bin/sh"); print("# shellcheck disable=SC2030,SC2031")
for name, job in json.load(open(sys.argv[1])).items():
    print("# job", name); print("(")
    for key in ("before_script", "script", "after_script"):
        print("\n".join(job.get(key) or []))
    print(")")' "$work/$(basename "$template" .yml).json" >"$work/$(basename "$template" .yml).sh"
    shellcheck --shell=sh "$work/$(basename "$template" .yml).sh" || fail "$template: shellcheck finds problems in the job script"
done
# The page of the report is a link on the merge request and the pipeline: the
# cleanup job and the group's merge job expose it, the page first.
python3 - "$work/cleanup.json" "$work/group.json" <<'EOF' || fail "a template does not expose its HTML report"
import json, sys
for rendered, job in ((sys.argv[1], "registry-cleanup"), (sys.argv[2], "registry-cleanup-group-merge")):
    artifacts = json.load(open(rendered))[job]["artifacts"]
    assert artifacts.get("expose_as") == "registry cleanup report", (rendered, artifacts)
    assert artifacts["paths"][0] == "registry-cleanup-report.html", (rendered, artifacts)
EOF
check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml >/dev/null ||
    check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml ||
    fail ".gitlab-ci.yml does not match GitLab's schema"

shopt -s nullglob
docs=(docs/*.md)
[ -f README.md ] && docs+=(README.md)
python3 tests/components/ci_inputs.py check-includes templates .gitlab-ci.yml "${docs[@]}" "$fixtures/pipeline.yml" ||
    fail "an include passes inputs its component does not declare"
python3 scripts/gen-inputs-table.py --check >/dev/null || fail "inputs tables out of date: run scripts/gen-inputs-table.py"

# --- 2. binaries, PATH ------------------------------------------------------------
log "building registry-cleanup and gitlab-emulator"
cargo build --quiet --locked -p registry-cleanup -p gitlab-emulator --bins
bin=$work/bin
mkdir -p "$bin"
ln -s "$root/target/debug/registry-cleanup" "$bin/registry-cleanup"
# The job scripts run in the image with busybox's tools; run them with those here too.
for applet in awk sed grep tr cat cut head tail printf; do
    ln -s /bin/busybox "$bin/$applet"
done
"$bin/registry-cleanup" --version >/dev/null || fail "registry-cleanup --version failed"

# --- 3. the emulator --------------------------------------------------------------
start_emulator "$root/target/debug/gitlab-emulator" "$work" --inventory "$fixtures/inventory.json" --project-path group/project --project-id 1
log "emulator: gitlab $gitlab_url, registry $registry_url"

ci_env=(
    CI_SERVER_URL="$gitlab_url" CI_API_V4_URL="$gitlab_url/api/v4"
    CI_PROJECT_ID=1 CI_PROJECT_PATH=group/project
    CI_REGISTRY="$registry_host" CI_REGISTRY_IMAGE="$registry_host/group/project"
    CLEANUP_REGISTRY_URL="$registry_url"
    CI_REGISTRY_USER=gitlab-ci-token CI_REGISTRY_PASSWORD="$job_token" CI_JOB_TOKEN="$job_token"
)

# state: the emulator's repositories as {"path": {"tag": "digest"}}, sorted JSON.
state() {
    python3 - "$gitlab_url" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_emulator/state") as r:
    data = json.load(r)
print(json.dumps({repo["path"]: repo["tags"] for repo in data["repositories"]}, sort_keys=True))
EOF
}
# deletes: how many DELETE requests the emulator has received so far.
deletes() {
    python3 - "$gitlab_url" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_emulator/requests") as r:
    print(sum(1 for q in json.load(r) if q["method"] == "DELETE"))
EOF
}
# minus STATE JSON_LIST_OF_[path,tag]: STATE without those tags (each must be there).
minus() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
state, gone = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for path, tag in gone:
    if tag not in state.get(path, {}):
        sys.exit(f"expected {path}:{tag} in the emulator before deleting it")
    del state[path][tag]
print(json.dumps(state, sort_keys=True))
EOF
}
# page_rows PAGE: how many tag rows the HTML page embeds (the data its script pages through).
page_rows() {
    python3 - "$1" <<'EOF'
import json, sys
page = open(sys.argv[1], encoding="utf-8").read()
marker = '<script type="application/json" id="tag-data">'
start = page.index(marker) + len(marker)
print(len(json.loads(page[start:page.index("</script>", start)])["rows"]))
EOF
}
# report_rows REPORT: how many tags a report lists (deleted, kept or protected, failed, …).
report_rows() {
    python3 - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(sum(len(r.get(k) or []) for r in report["repositories"]
          for k in ("deleted", "kept_tags", "failed", "skipped", "already_absent")))
EOF
}
# job_page JOB HTML REPORT: the job kept the HTML page of its report as an artifact,
# with every tag the report lists.
job_page() {
    local page
    page=$(artifact "$1" "$2")
    [ -s "$page" ] || fail "$1: no HTML report artifact ($page)"
    grep -q '<meta http-equiv="Content-Security-Policy" content="default-src' "$page" ||
        fail "$1: $2 is not the report's page"
    same "$1: tag rows of $2" "$(report_rows "$(artifact "$1" "$3")")" "$(page_rows "$page")"
}
# report_deleted REPORT: the [path, tag] pairs a report lists as deleted, sorted JSON.
report_deleted() {
    python3 - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(json.dumps(sorted([r["path"], d["tag"]] for r in report["repositories"] for d in r["deleted"])))
EOF
}
same() { # same WHAT WANT GOT
    [ "$2" = "$3" ] || fail "$1:
  want $2
  got  $3"
}

initial=$(state)
[ "$initial" != "{}" ] || fail "the emulator has no repositories"
# The plan for tests/components/policy.yml, written out by hand (see the policy's comments).
expected='[["group/project", "mr-2-bbb"], ["group/project", "mr-3-ccc"], ["group/project/api", "deadbeef"]]'
expected_count=3

# The same plan from the binary, offline, as a cross-check of the fixture.
"$bin/registry-cleanup" plan --inventory "$fixtures/inventory.json" --policy "$fixtures/policy.yml" \
    --report "$work/plan.json" >/dev/null || fail "registry-cleanup plan failed"
same "registry-cleanup plan on the fixture" "$expected" "$(report_deleted "$work/plan.json")"

# --- 4. the throw-away project ----------------------------------------------------
repo=$work/project
mkdir -p "$repo/.gitlab"
cp -r templates "$repo/templates"
cp "$fixtures/policy.yml" "$repo/.gitlab/registry-cleanup.yml" # the `policy` input's default path
cp "$fixtures/review-policy.yml" "$repo/.gitlab/review-policy.yml"
cp "$fixtures/pipeline.yml" "$repo/.gitlab-ci.yml"
git -C "$repo" init --quiet --initial-branch=review-feature
git -C "$repo" -c user.name=test -c user.email=test@example.com add -A
git -C "$repo" -c user.name=test -c user.email=test@example.com commit --quiet -m "component test"
git -C "$repo" remote add origin https://gitlab.example.com/group/project.git
git -C "$repo" update-ref refs/remotes/origin/main HEAD
git -C "$repo" symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main

# when_of JOB: the job's `when` as gitlab-ci-local evaluates its rules (manual, on_success…).
when_of() {
    (cd "$repo" && gitlab-ci-local --no-color --home "$work/home" --variable CI_PIPELINE_SOURCE=schedule --list-json 2>/dev/null) |
        python3 -c 'import json, sys
text = sys.stdin.read()
jobs = json.loads(text[text.index("\n[") + 1:])  # after the warnings it prints first
print(next((job["when"] for job in jobs if job["name"] == sys.argv[1]), ""))' "$1"
}
# glci ARGS...: gitlab-ci-local in the project, output kept in $work/glci.log.
# GitLab sets CI_JOB_MANUAL=true for a job whose `when` is manual (or delayed),
# however it is started — by a user or by the environment's stop
# (Ci::Processable#action?; see docs/components.md); gitlab-ci-local does not, so
# for one job it is set here the same way.
glci() {
    local args=(--no-color --force-shell-executor --home "$work/home" --variable CI_PIPELINE_SOURCE=schedule)
    local kv
    for kv in "${ci_env[@]}"; do args+=(--variable "$kv"); done
    if [ $# = 1 ] && [ "${1#-}" = "$1" ] && [ "$(when_of "$1")" = manual ]; then
        args+=(--variable CI_JOB_MANUAL=true)
    fi
    (cd "$repo" && PATH="$bin:$PATH" gitlab-ci-local "${args[@]}" "$@") >"$work/glci.log" 2>&1
}
run_job() { # run_job JOB...: must pass
    glci "$@" || {
        cat "$work/glci.log" >&2
        fail "gitlab-ci-local $* failed"
    }
}
artifact() { echo "$repo/.gitlab-ci-local/artifacts/$1/$2"; }
dotenv_of() { cat "$(artifact "$1" .gitlab-ci-reports/dotenv/registry-cleanup.env)"; }

log "gitlab-ci-local: job list"
glci --list || {
    cat "$work/glci.log" >&2
    fail "gitlab-ci-local rejects tests/components/pipeline.yml"
}
for job in registry-cleanup cleanup-dry-run cleanup-capped cleanup-review cleanup-review-apply cleanup-review-restore registry-cleanup-restore stop-review stop-review-dry-run stop-review-hostile stop-review-automatic stop-review-allowed review cleanup-summary \
    "group-dry-run: \[1/3\]" "group-dry-run: \[3/3\]" group-dry-run-merge; do
    grep -q "^$job " "$work/glci.log" || fail "job $job missing from gitlab-ci-local --list: $(cat "$work/glci.log")"
done

log "group component, dry run: 3 shard jobs (parallel:) and their merge"
# The group endpoint refuses the job token: the shard jobs get an access token.
run_job group-dry-run-merge --needs --variable GITLAB_TOKEN="$access_token"
same "emulator after the group dry run" "$initial" "$(state)"
same "DELETE requests in the group dry run" 0 "$(deletes)"
# Each shard job wrote the report of its own CI_NODE_INDEX.
for index in 1 2 3; do
    found=0
    for shard_report in "$repo"/.gitlab-ci-local/artifacts/group-dry-run*/registry-cleanup-shard-"$index".json; do
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["shard"] == {"index": int(sys.argv[2]), "total": 3} else 1)' \
            "$shard_report" "$index" || fail "$shard_report does not record shard $index/3"
        found=1
    done
    same "a report of shard $index/3" 1 "$found"
done
report=$(artifact group-dry-run-merge group-report.json)
[ -f "$report" ] || fail "no merged report artifact ($report)"
same "group dry run, merged: would delete" "$expected" "$(report_deleted "$report")"
job_page group-dry-run-merge registry-cleanup-report.html group-report.json
grep -qx "CLEANUP_DELETED=$expected_count" <<<"$(dotenv_of group-dry-run-merge)" ||
    fail "merged dotenv lacks CLEANUP_DELETED=$expected_count: $(dotenv_of group-dry-run-merge)"
# Written by the binary (`report merge --dotenv`), not parsed out of JSON in the job.
grep -q '^CLEANUP_DELETED_BYTES=[0-9]' <<<"$(dotenv_of group-dry-run-merge)" ||
    fail "merged dotenv lacks CLEANUP_DELETED_BYTES: $(dotenv_of group-dry-run-merge)"

log "cleanup, dry run"
run_job cleanup-dry-run
same "emulator after the dry run" "$initial" "$(state)"
same "DELETE requests in the dry run" 0 "$(deletes)"
report=$(artifact cleanup-dry-run dry-run-report.json)
[ -f "$report" ] || fail "no dry-run report artifact ($report)"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["dry_run"] is True else 1)' "$report" ||
    fail "dry-run report does not say dry_run: true"
same "dry run: would delete" "$expected" "$(report_deleted "$report")"
dotenv=$(dotenv_of cleanup-dry-run)
for want in "CLEANUP_DELETED=$expected_count" CLEANUP_FAILED=0 CLEANUP_PLANNED_ONLY=true; do
    grep -qx "$want" <<<"$dotenv" || fail "dry-run dotenv lacks $want: $dotenv"
done

log "cleanup with max_deletions below the plan: refused, nothing deleted"
if glci cleanup-capped; then
    fail "cleanup-capped (max_deletions 2, plan 3) passed: $(cat "$work/glci.log")"
fi
same "emulator after the refused run" "$initial" "$(state)"
same "DELETE requests in the refused run" 0 "$(deletes)"
grep -qx CLEANUP_PLANNED_ONLY=true <<<"$(dotenv_of cleanup-capped)" ||
    fail "refused run's dotenv does not say CLEANUP_PLANNED_ONLY=true: $(dotenv_of cleanup-capped)"

log "cleanup"
run_job registry-cleanup
after_cleanup=$(minus "$initial" "$expected")
same "emulator after the cleanup" "$after_cleanup" "$(state)"
report=$(artifact registry-cleanup registry-cleanup-report.json)
[ -f "$report" ] || fail "no report artifact ($report)"
same "cleanup: deleted" "$expected" "$(report_deleted "$report")"
job_page registry-cleanup registry-cleanup-report.html registry-cleanup-report.json
dotenv=$(dotenv_of registry-cleanup)
for want in "CLEANUP_DELETED=$expected_count" CLEANUP_FAILED=0 CLEANUP_FAILED_REPOSITORIES=0 CLEANUP_PROTECTED=2 CLEANUP_KEPT=7 \
    CLEANUP_ALREADY_ABSENT=0 CLEANUP_SKIPPED=0 CLEANUP_PLANNED_ONLY=false; do
    grep -qx "$want" <<<"$dotenv" || fail "dotenv lacks $want: $dotenv"
done
# Written by the binary (--dotenv), not parsed out of the report: it alone knows the bytes,
# and they agree with the report's totals.
report_bytes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["deleted_bytes"])' "$report")
grep -qx "CLEANUP_DELETED_BYTES=$report_bytes" <<<"$dotenv" ||
    fail "dotenv lacks CLEANUP_DELETED_BYTES=$report_bytes (the report's totals): $dotenv"
run_job cleanup-summary
grep -q "summary deleted=$expected_count kept=7 protected=2 failed=0" "$work/glci.log" ||
    fail "cleanup-summary did not receive the counts: $(cat "$work/glci.log")"

log "delete, dry run"
deletes_before=$(deletes)
run_job stop-review-dry-run
same "emulator after the delete dry run" "$after_cleanup" "$(state)"
same "DELETE requests in the delete dry run" "$deletes_before" "$(deletes)"

log "delete with a hostile tag element: refused, nothing run or deleted"
if glci stop-review-hostile; then
    fail "stop-review-hostile passed: $(cat "$work/glci.log")"
fi
grep -q "refusing tag '\$(touch pwned)'" "$work/glci.log" || fail "no refusal message: $(cat "$work/glci.log")"
[ ! -e "$repo/pwned" ] || fail "an element of the tags input was run as a command"
same "emulator after the refused delete" "$after_cleanup" "$(state)"

log "delete with rules lacking when: manual: refused, nothing deleted"
same "when of stop-review-automatic (the misconfiguration)" on_success "$(when_of stop-review-automatic)"
deletes_before=$(deletes)
if glci stop-review-automatic; then
    fail "stop-review-automatic (rules without when: manual) passed: $(cat "$work/glci.log")"
fi
grep -q "refusing to delete: this job was not started manually" "$work/glci.log" ||
    fail "no refusal naming the cause: $(cat "$work/glci.log")"
grep -q 'Add `when: manual` to each' "$work/glci.log" || fail "the refusal does not name the fix: $(cat "$work/glci.log")"
same "emulator after the refused automatic delete" "$after_cleanup" "$(state)"
same "DELETE requests of the refused automatic delete" "$deletes_before" "$(deletes)"

log "delete (on_stop job, branch review-feature)"
same "when of stop-review" manual "$(when_of stop-review)"
run_job stop-review
grep -q 'registry-cleanup delete --repository . --repository api -- review-feature' "$work/glci.log" ||
    fail "stop-review ran an unexpected command: $(grep 'registry-cleanup delete' "$work/glci.log")"
same "emulator after the delete" \
    "$(minus "$after_cleanup" '[["group/project", "review-feature"], ["group/project/api", "review-feature"]]')" \
    "$(state)"
log "delete again: already absent is success"
run_job stop-review
log "rules without when: manual and allow_automatic: true: runs the delete"
run_job stop-review-allowed
grep -q 'group/project/api:review-feature: already absent' "$work/glci.log" ||
    fail "stop-review-allowed did not run the delete: $(cat "$work/glci.log")"

log "review, then apply: the plan job deletes nothing; the manual apply job deletes exactly its plan"
same "when of cleanup-review-apply" manual "$(when_of cleanup-review-apply)"
same "when of cleanup-review-restore" manual "$(when_of cleanup-review-restore)"
same "when of registry-cleanup-restore" manual "$(when_of registry-cleanup-restore)"
case "$(when_of registry-cleanup-apply)" in
    "" | never) ;;
    *) fail "registry-cleanup-apply is offered without review: true" ;;
esac
before_review=$(state)
deletes_before=$(deletes)
run_job cleanup-review
same "emulator after the plan job" "$before_review" "$(state)"
same "DELETE requests of the plan job" "$deletes_before" "$(deletes)"
review_plan=$(artifact cleanup-review review-plan.json)
review_expected='[["group/project", "mr-1-aaa"], ["group/project", "mr-4-ddd"]]'
same "the review's plan" "$review_expected" "$(report_deleted "$review_plan")"
run_job cleanup-review-apply
grep -q 'registry-cleanup run' "$work/glci.log" || fail "cleanup-review-apply ran no run: $(cat "$work/glci.log")"
same "emulator after the apply job" "$(minus "$before_review" "$review_expected")" "$(state)"
applied=$(artifact cleanup-review-apply review-applied.json)
same "the apply job: deleted" "$review_expected" "$(report_deleted "$applied")"
python3 - "$applied" <<'EOF2' || fail "the apply job's report does not name the plan it applied: $(cat "$applied")"
import json, sys
plan = json.load(open(sys.argv[1]))["applied_plan"]
assert plan["file"] == "review-plan.json" and plan["deletions"] == 2, plan
EOF2

# --- 5. this project's own .gitlab-ci.yml -------------------------------------------
# gitlab-ci-local cannot fetch `include: component:`, so the copy includes the same
# templates with `include: local:` and the same inputs; everything else is unchanged.
log "this project's .gitlab-ci.yml: jobs of branch and tag pipelines, needs"
self=$work/self
mkdir -p "$self/tests"
cp -r templates Cargo.toml "$self/"
cp -r tests/components "$self/tests/"
# shellcheck disable=SC2016 # literal $CI_* in the pattern
sed -E 's#component: \$CI_SERVER_FQDN/\$CI_PROJECT_PATH/([a-z-]+)@\$CI_COMMIT_SHA#local: templates/\1.yml#' \
    .gitlab-ci.yml >"$self/.gitlab-ci.yml"
[ "$(grep -c '^  - local: templates/' "$self/.gitlab-ci.yml")" = 2 ] ||
    fail "expected two component includes in .gitlab-ci.yml"
git -C "$self" init --quiet --initial-branch=main
git -C "$self" -c user.name=test -c user.email=test@example.com add -A
git -C "$self" -c user.name=test -c user.email=test@example.com commit --quiet -m self
git -C "$self" remote add origin https://gitlab.example.com/registry-cleanup/registry-cleanup.git
git -C "$self" update-ref refs/remotes/origin/main HEAD
git -C "$self" symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main
# jobs_of ARGS...: the names of the jobs gitlab-ci-local would run, sorted, one line.
jobs_of() {
    (cd "$self" && gitlab-ci-local --no-color --home "$work/home" --validate-dependency-chain "$@" >"$work/self.log" 2>&1) ||
        fail "gitlab-ci-local rejects .gitlab-ci.yml ($*): $(cat "$work/self.log")"
    (cd "$self" && gitlab-ci-local --no-color --home "$work/home" --list "$@" 2>/dev/null) |
        awk 'f { print $1 } /^name / { f = 1 }' | sort | tr '\n' ' '
}
lint_test_build=(benchmarks browser-and-examples build-image clippy component-test fmt image-smoke inputs-table ledger real-registry test)
same "jobs of a branch pipeline" \
    "$(printf '%s\n' "${lint_test_build[@]}" component-cleanup component-delete component-review component-verify | sort | tr '\n' ' ')" \
    "$(jobs_of)"
same "jobs of a v1.2.3 tag pipeline" \
    "$(printf '%s\n' "${lint_test_build[@]}" release release-image | sort | tr '\n' ' ')" \
    "$(jobs_of --variable CI_COMMIT_TAG=v1.2.3 --unset-variable CI_COMMIT_BRANCH)"
same "jobs of a non-version tag pipeline" \
    "$(printf '%s\n' "${lint_test_build[@]}" | sort | tr '\n' ' ')" \
    "$(jobs_of --variable CI_COMMIT_TAG=nightly --unset-variable CI_COMMIT_BRANCH)"

# --- 6. misspelt inputs -------------------------------------------------------------
# expect_rejected NAME MESSAGE INCLUDE_INPUTS_YAML: gitlab-ci-local must refuse it.
expect_rejected() {
    printf 'include:\n  - local: templates/cleanup.yml\n    inputs:\n      %s\n' "$3" >"$repo/.gitlab-ci.yml"
    if glci --list; then
        fail "gitlab-ci-local accepted $1 ($3)"
    fi
    grep -q "$2" "$work/glci.log" || fail "gitlab-ci-local rejected $1 without saying '$2': $(cat "$work/glci.log")"
    log "rejected $1: $(grep -m1 "$2" "$work/glci.log")"
}
expect_rejected "a misspelt option" "not in the list of allowed options" "engine: clinet"
expect_rejected "a string for a boolean" "not a boolean" 'dry_run: "yes"'
expect_rejected "a string for a number" "not a number" 'max_deletions: "ten"'

# A misspelt input *name*: GitLab refuses it at pipeline creation ("unknown input
# arguments"); gitlab-ci-local 4.70.0 silently ignores it, so ci_inputs.py checks it.
printf 'include:\n  - local: templates/cleanup.yml\n    inputs:\n      dryrun: true\n' >"$repo/.gitlab-ci.yml"
if python3 tests/components/ci_inputs.py check-includes templates "$repo/.gitlab-ci.yml" 2>"$work/typo.err"; then
    fail "ci_inputs.py accepted the misspelt input name dryrun"
fi
# shellcheck disable=SC2016 # literal backticks
grep -q 'unknown input `dryrun` (did you mean `dry_run`?)' "$work/typo.err" || fail "unexpected message: $(cat "$work/typo.err")"
log "rejected a misspelt input name: $(head -n1 "$work/typo.err")"
if glci --list; then
    log "note: gitlab-ci-local $(gitlab-ci-local --version) accepts the unknown input name dryrun (GitLab does not)"
fi

log "OK"
