#!/usr/bin/env bash
# Builds the project's Dockerfile offline with buildah and checks the image:
#
#   scripts/ci-tools.sh && scripts/image-test.sh
#
# Runs as root on Debian 12 without a Docker engine or registry access:
# - the `build` stage is replaced by `--build-context build=DIR`, DIR holding a
#   locally built static binary and the CA bundle at the paths the Dockerfile copies;
# - the base image is pre-created under its exact name from a root filesystem made of
#   Debian's busybox-static (removed again afterwards if this script made it);
# - the image is run by mounting it and chroot-ing into it as its own user.
# It installs nothing (scripts/ci-tools.sh does) and cleans up what it made.
#
# Environment: MAX_IMAGE_BYTES (default 15000000).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

BASE_IMAGE=docker.io/library/busybox:1.37-musl # must match the Dockerfile's BASE_IMAGE
IMAGE=localhost/registry-cleanup:image-test
TARGET=x86_64-unknown-linux-gnu
MAX_IMAGE_BYTES=${MAX_IMAGE_BYTES:-15000000}
BUILDAH=(buildah --storage-driver vfs)

# shellcheck source=scripts/emulator.sh
. "$root/scripts/emulator.sh"
log() { printf 'image-test: %s\n' "$*" >&2; }
fail() {
    printf 'image-test: FAIL: %s\n' "$*" >&2
    exit 1
}

for tool in buildah cargo file ldd chroot python3; do
    command -v "$tool" >/dev/null || fail "$tool not found; run scripts/ci-tools.sh"
done
[ "$(id -u)" = 0 ] || fail "must run as root (buildah vfs storage, chroot)"
python3 -c 'import yaml' 2>/dev/null || fail "python3 has no yaml module; run scripts/ci-tools.sh"

work=$(mktemp -d /tmp/image-test.XXXXXX)
container=""
made_base=""
emulator_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null
    if [ -n "$container" ]; then
        "${BUILDAH[@]}" umount "$container" >/dev/null 2>&1
        "${BUILDAH[@]}" rm "$container" >/dev/null 2>&1
    fi
    "${BUILDAH[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
    [ -n "$made_base" ] && "${BUILDAH[@]}" rmi -f "$BASE_IMAGE" >/dev/null 2>&1
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an interrupted run (same image name) must not be mistaken for this build.
for c in $("${BUILDAH[@]}" containers --quiet --filter "ancestor=$IMAGE" 2>/dev/null); do
    "${BUILDAH[@]}" rm "$c" >/dev/null 2>&1 || true
done
"${BUILDAH[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true

# --- 1. a static binary, standing in for the musl build of the `build` stage -------
log "building a static release binary ($TARGET, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --release --locked --target "$TARGET" --bin registry-cleanup
bin=target/$TARGET/release/registry-cleanup
file -L "$bin" | grep -Eq 'statically linked|static-pie linked' ||
    fail "$bin is not statically linked: $(file -L "$bin")"
if ldd "$bin" 2>&1 | grep -q '=>'; then
    fail "$bin links shared libraries: $(ldd "$bin" 2>&1 | tr '\n' ' ')"
fi

ctx=$work/build-stage
install -D -m 0755 "$bin" "$ctx/usr/local/bin/registry-cleanup"
[ -s /etc/ssl/certs/ca-certificates.crt ] || fail "/etc/ssl/certs/ca-certificates.crt missing (apt-get install ca-certificates)"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/ca-certificates.crt"

# --- 2. the base image, from Debian's static busybox ------------------------------
if "${BUILDAH[@]}" inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "using existing $BASE_IMAGE"
else
    log "creating $BASE_IMAGE from /bin/busybox (busybox-static)"
    file -L /bin/busybox | grep -q 'statically linked' ||
        fail "/bin/busybox is not static; run scripts/ci-tools.sh (busybox-static)"
    rootfs=$work/busybox-rootfs
    mkdir -p "$rootfs"/{bin,dev,etc,home,proc,root,sys,usr,var}
    install -d -m 1777 "$rootfs/tmp"
    install -m 0755 /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
    done
    # The same accounts as the official busybox image.
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
        'nobody:x:65534:65534:nobody:/home:/bin/false' >"$rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'nobody:x:65534:' >"$rootfs/etc/group"
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" copy "$c" "$rootfs" / >/dev/null
    "${BUILDAH[@]}" config --cmd sh \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    "${BUILDAH[@]}" commit --quiet "$c" "$BASE_IMAGE" >/dev/null
    "${BUILDAH[@]}" rm "$c" >/dev/null
    made_base=1
fi

# --- 3. build the real Dockerfile -------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
log "building $IMAGE from Dockerfile (version $version, revision $revision)"
"${BUILDAH[@]}" bud --quiet --isolation chroot --pull=never \
    --build-context "build=$ctx" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -f Dockerfile -t "$IMAGE" . >/dev/null

# --- 4. configuration -------------------------------------------------------------
"${BUILDAH[@]}" inspect --type image "$IMAGE" |
    python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["OCIv1"]["config"], sys.stdout)' >"$work/config.json"
python3 - "$work/config.json" "$version" "$revision" <<'EOF' || fail "image configuration"
import json, sys
cfg = json.load(open(sys.argv[1]))
version, revision = sys.argv[2], sys.argv[3]
labels = cfg.get("Labels") or {}
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
problems = []
user = cfg.get("User", "")
if user.split(":")[0] in ("", "0", "root"):
    problems.append(f"user is {user!r}, want non-root")
if cfg.get("Entrypoint") != ["registry-cleanup"]:
    problems.append(f"entrypoint is {cfg.get('Entrypoint')!r}")
if env.get("SSL_CERT_FILE") != "/etc/ssl/certs/ca-certificates.crt":
    problems.append(f"SSL_CERT_FILE is {env.get('SSL_CERT_FILE')!r}")
if "/usr/local/bin" not in env.get("PATH", "").split(":"):
    problems.append(f"PATH {env.get('PATH')!r} lacks /usr/local/bin")
want = {"title": "registry-cleanup", "version": version, "revision": revision, "licenses": "MIT"}
for key, value in want.items():
    got = labels.get(f"org.opencontainers.image.{key}")
    if got != value:
        problems.append(f"label org.opencontainers.image.{key} is {got!r}, want {value!r}")
for key in ("source", "description", "created"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        problems.append(f"label org.opencontainers.image.{key} is empty")
for p in problems:
    print("  " + p, file=sys.stderr)
print(f"image-test: user {user}, entrypoint {cfg.get('Entrypoint')}, "
      f"{sum(k.startswith('org.opencontainers.image.') for k in labels)} OCI labels", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["User"])' "$work/config.json")
path=$(python3 -c 'import json,sys; print(dict(e.split("=",1) for e in json.load(open(sys.argv[1]))["Env"])["PATH"])' "$work/config.json")

# --- 5. contents and size ---------------------------------------------------------
container=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
mnt=$("${BUILDAH[@]}" mount "$container")
for f in bin/sh etc/ssl/certs/ca-certificates.crt usr/local/bin/registry-cleanup; do
    [ -e "$mnt/$f" ] || fail "/$f missing from the image"
done
[ -x "$mnt/usr/local/bin/registry-cleanup" ] || fail "/usr/local/bin/registry-cleanup is not executable"
grep -q '^registry-cleanup:x:10001:' "$mnt/etc/passwd" || fail "no passwd entry for uid 10001"

rootfs_bytes=$(du -sb "$mnt" | cut -f1)
bin_bytes=$(stat -c %s "$mnt/usr/local/bin/registry-cleanup")
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1000000 }'; }
log "size: rootfs $rootfs_bytes bytes ($(mb "$rootfs_bytes")), binary $bin_bytes bytes ($(mb "$bin_bytes")), limit $(mb "$MAX_IMAGE_BYTES")"
[ "$rootfs_bytes" -le "$MAX_IMAGE_BYTES" ] || fail "image rootfs is $rootfs_bytes bytes, over $MAX_IMAGE_BYTES"

# Runs a command inside the image as its user, with its PATH and CA bundle, resolving
# the entrypoint by name as a container runtime would.
in_image() {
    chroot --userspec="$user" "$mnt" /bin/env -i "PATH=$path" HOME=/home/registry-cleanup \
        SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$@"
}

# --- 6. run it --------------------------------------------------------------------
out=$(in_image registry-cleanup --version) || fail "registry-cleanup --version exited $?"
case $out in
    *"$version"*) log "--version: $out" ;;
    *) fail "--version printed '$out', want it to contain $version" ;;
esac
# shellcheck disable=SC2016 # expanded by the image's shell
in_image sh -c 'echo "sh works as $(id -u)"' | grep -qx 'sh works as 10001' || fail "/bin/sh does not run as uid 10001"

# One real command against the test emulator, through the image's binary.
log "building the test emulator"
cargo build --quiet --locked -p gitlab-emulator
emulator=$root/target/debug/gitlab-emulator
cat >"$work/inventory.json" <<'EOF'
{"repositories": [
  {"path": "group/project", "tags": [
    {"name": "latest", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "created_at": "2024-05-01T10:00:00Z"},
    {"name": "v1.0.0", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "created_at": "2024-05-01T10:00:00Z"},
    {"name": "mr-1-abc", "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "created_at": "2024-04-01T10:00:00Z"}]},
  {"path": "group/project/api", "tags": [
    {"name": "main", "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333", "created_at": "2024-05-02T10:00:00Z"}]}
]}
EOF
start_emulator "$emulator" "$work" --inventory "$work/inventory.json" --project-path group/project --project-id 1

# chroot shares the host's network namespace, so 127.0.0.1 reaches the emulator.
in_image_ci() {
    in_image CI_SERVER_URL="$gitlab_url" CI_API_V4_URL="$gitlab_url/api/v4" \
        CI_PROJECT_ID=1 CI_PROJECT_PATH=group/project \
        CI_REGISTRY="$registry_host" CI_REGISTRY_IMAGE="$registry_host/group/project" \
        CLEANUP_REGISTRY_URL="$registry_url" CI_REGISTRY_USER=gitlab-ci-token \
        CI_REGISTRY_PASSWORD="$job_token" CI_JOB_TOKEN="$job_token" "$@"
}
log "running 'registry-cleanup inventory' inside the image against the emulator"
in_image_ci registry-cleanup inventory >"$work/live-inventory.json" 2>"$work/inventory.err" ||
    fail "registry-cleanup inventory exited $?: $(cat "$work/inventory.err")"
python3 - "$work/inventory.json" "$work/live-inventory.json" <<'EOF' || fail "inventory output differs from the emulator's contents"
import json, sys
want = {r["path"]: {t["name"]: t["digest"] for t in r["tags"]} for r in json.load(open(sys.argv[1]))["repositories"]}
got = {r["path"]: {t["name"]: t.get("digest") for t in r["tags"]} for r in json.load(open(sys.argv[2]))["repositories"]}
if got != want:
    print(f"  want {want}\n  got  {got}", file=sys.stderr)
    sys.exit(1)
EOF
log "inventory from inside the image lists $(grep -c '"name"' "$work/live-inventory.json") tags in 2 repositories, digests match"

# The delete component's job as GitLab Runner would run it in this image: its
# variables, then its script in the image's sh (busybox), as the image's user.
log "running templates/delete.yml's job script inside the image"
python3 tests/components/ci_inputs.py render templates/delete.yml \
    '{"tags": ["mr-1-abc"], "repositories": ["."]}' >"$work/delete-job.json"
mapfile -t job_vars < <(python3 -c 'import json, sys
(job,) = json.load(open(sys.argv[1])).values()
for k, v in job["variables"].items():
    print(f"{k}={v}")' "$work/delete-job.json")
job_script=$(python3 -c 'import json, sys
(job,) = json.load(open(sys.argv[1])).values()
print("\n".join(job["script"]))' "$work/delete-job.json")
# CI_JOB_MANUAL=true: GitLab sets it on a played manual job, which an on_stop job is;
# without it the job refuses to delete (see docs/components.md).
in_image_ci "${job_vars[@]}" CI_JOB_MANUAL=true sh -e -c "$job_script" >"$work/delete-job.log" 2>&1 ||
    fail "the delete job's script failed in the image: $(cat "$work/delete-job.log")"
python3 - "$gitlab_url" <<'EOF' || fail "emulator state after the delete job (log: $(cat "$work/delete-job.log"))"
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_emulator/state") as r:
    tags = {repo["path"]: set(repo["tags"]) for repo in json.load(r)["repositories"]}
want = {"group/project": {"latest", "v1.0.0"}, "group/project/api": {"main"}}
if tags != want:
    print(f"  want {want}\n  got  {tags}", file=sys.stderr)
    sys.exit(1)
EOF
log "delete job in the image removed mr-1-abc and nothing else"

log "OK"
